"""A what-if for W2 on a Redis Cluster: the store with a cluster read that costs nothing but its I/O.

:class:`BareClusterReads` replaces a cluster store's ``read_rows`` (``store.online_store._io``). For
each request it has been shown beforehand (:meth:`~BareClusterReads.prepare`, off the clock), it
keeps the work a native read path could do in no time: the routing, the framed ``GET`` pipeline of
each master and the permutation that puts the replies back in order. A timed call then only sends
the pipelines, takes the replies as the store does (hiredis, the store's own kind of non-blocking
socket per master, sleeping on the last-written master still owing replies) and applies the
permutation with one C-level ``map``; everything around the read (key building, decoding, the
response) is the store's own code. It measures the floor under the cluster's W2b ratio on a
machine: what a client with no routing, framing or reordering cost would measure there.

Used by ``bench.w2_paired --cluster-floor``. Not a read path for serving: a request it was not shown
raises ``KeyError``, and a redirection (``MOVED``) is not followed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ladle.online.redis.cluster_read import RawReads, _Link, plan_gets, routing

#: What one prepared request needs: the links to write, their pipelines, the replies each owes, and
#: the position of each entity's value among the replies taken master by master.
Plan = tuple[list[_Link], list[bytes], list[int], list[int]]


class BareClusterReads:
    """A cluster store's ``read_rows`` with routing, framing and reordering done ahead (see the module)."""

    def __init__(self, store: Any) -> None:
        self._io = store.online_store._io
        self._real: Callable[[str, Sequence[tuple[bytes, Sequence[bytes]]]], list[bytes | None]] = self._io.read_rows
        self._nodes, self._by_crc = self._io.run(routing)
        # the store's own kind of reads: its links (plain or TLS) and its way of collecting replies
        self._raw = RawReads(self._io._endpoint, self._io.settings)
        self._links = [self._raw._open(node.host, int(node.port)) for node in self._nodes]
        self._plans: dict[tuple[str, tuple[tuple[bytes, tuple[bytes, ...]], ...]], Plan] = {}
        self._recording = False
        self._io.read_rows = self.read_rows

    def prepare(self, call: Callable[[Any], Any], arguments: Sequence[Any]) -> None:
        """Make each of ``arguments``' reads plannable: ``call`` each once through the real read path
        (its routing recorded), off the clock. Plans of earlier runs are dropped."""
        self._plans.clear()
        self._recording = True
        try:
            for argument in arguments:
                call(argument)
        finally:
            self._recording = False

    def read_rows(self, project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[bytes | None]:
        """Stored rows of ``groups`` in order: recorded and read the real way while preparing, else bare I/O."""
        key = (project, tuple((vid, tuple(entities)) for vid, entities in groups))
        if self._recording:
            self._plans[key] = self._plan(project, groups)
            return self._real(project, groups)
        links, payloads, counts, order = self._plans[key]
        for link, payload in zip(links, payloads, strict=True):
            link.sock.send(payload)
        replies = [reply for mine in self._raw._collect(links, counts) for reply in mine]
        return list(map(replies.__getitem__, order))

    def _plan(self, project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]]) -> Plan:
        plan, size = plan_gets(project, groups, self._by_crc, len(self._nodes))
        order = [0] * size
        for j, i in enumerate(i for targets, _ in plan.values() for i in targets):
            order[i] = j
        return (
            [self._links[k] for k in plan],
            [b"".join(payload) for _, payload in plan.values()],
            [len(targets) for targets, _ in plan.values()],
            order,
        )

    def close(self) -> None:
        """Give the store its own read path back and close the links."""
        vars(self._io).pop("read_rows", None)
        for link in self._links:
            link.close()
