"""Reads from a Redis Cluster on raw sockets: one pipeline of GETs per master, replies taken as they arrive.

A read of N random entities touches N slots (keys are hash-tagged by entity) and a multi-key
command cannot span slots, so it is N ``GET``s. Going through redis-py's connection layer cost the
client several µs per master and per key; here each master has one plain socket (reused across
reads) with its own hiredis reader. Each master's ``GET``s are framed in one ``bytes.join`` per view
and sent in one write; all masters are written first, then :func:`select.poll` hands over each
master's replies as they arrive, in whatever order the masters answer. (A read-only cross-slot Lua
script per master, one call instead of N commands, was measured too: it cost the masters ~0.5 µs
more per key than a ``GET``, more than it saved the client.)

A ``MOVED`` / ``ASK`` / ``TRYAGAIN`` / ``CLUSTERDOWN`` reply (a stale slot map after a resharding
or a failover, a slot being migrated) leaves that key to the caller's general path
(:func:`.fanout.fan_out`, which follows the redirection and refreshes the slot map), so later reads
are routed by the refreshed map. A lost connection or a timeout raises :class:`LinkLost` /
:class:`LinkTimeout`; the caller decides on retries (:meth:`.cluster.ClusterNodes.read_rows`).
Passwords, ACL users and client names are sent on connect as redis-py would; TLS is not served
here (:attr:`RawReads.usable` is False and the caller keeps the general path, on redis-py's TLS
connections).
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Sequence
from itertools import chain
from typing import Any

import hiredis

from ladle.errors import BackendError
from ladle.online.redis.conn import RedisEndpoint
from ladle.online.redis.fanout import slot_table
from ladle.online.redis.keys import key_prefix, key_suffix
from ladle.online.redis.single import IOSettings

_GET = b"*2\r\n$3\r\nGET\r\n"
_RECV = 1 << 18
# Error replies meaning "this master does not serve this key now": the general path follows them.
_ELSEWHERE = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")
_PLAIN = {bytes, type(None)}


class LinkLost(Exception):
    """A master's connection failed (refused, reset, closed) during a read."""


class LinkTimeout(Exception):
    """A master did not answer within the socket timeout."""


class _Link:
    """One socket to one master, with its own hiredis reader."""

    def __init__(self, host: str, port: int, endpoint: RedisEndpoint, settings: IOSettings) -> None:
        self.name = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=settings.connect_timeout)
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.settimeout(settings.socket_timeout)
        self.sock = sock
        self.reader = hiredis.Reader()
        hello: list[bytes] = []
        options = endpoint.options
        if "password" in options:
            auth = [b"AUTH", options["username"].encode()] if "username" in options else [b"AUTH"]
            hello.append(_command(*auth, options["password"].encode()))
        if "client_name" in options:
            hello.append(_command(b"CLIENT", b"SETNAME", options["client_name"].encode()))
        if not hello:
            return
        try:
            self.sock.sendall(b"".join(hello))
            replies = [self.reply() for _ in hello]
        except BaseException:
            self.close()
            raise
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                self.close()  # the message names the failure (e.g. WRONGPASS), never the password
                raise LinkLost(f"{self.name} refused the connection: {reply}")

    def reply(self) -> Any:
        """The next reply (blocking, within the socket timeout)."""
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            self.receive()

    def receive(self) -> None:
        """Feed what the socket has (at least one byte) to the reader."""
        try:
            data = self.sock.recv(_RECV)
        except TimeoutError as exc:
            raise LinkTimeout(f"{self.name}: {exc}") from exc
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc
        if not data:
            raise LinkLost(f"{self.name} closed the connection")
        self.reader.feed(data)

    def send(self, payload: bytes) -> None:
        """Write a whole pipeline."""
        try:
            self.sock.sendall(payload)
        except TimeoutError as exc:
            raise LinkTimeout(f"{self.name}: {exc}") from exc
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        """Close the socket (unread replies are lost with it)."""
        self.sock.close()  # never raises for a socket the kernel already dropped


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join([b"$%d\r\n%b\r\n" % (len(a), a) for a in args])


def framed_gets(pre: bytes, suf: bytes, entities: Sequence[bytes]) -> bytes:
    """``GET <pre><entity><suf>`` for every entity, framed as RESP and concatenated.

    When every entity has the same length (fixed-format codes, the usual case) this is one C-level
    ``join``; otherwise one format per key.
    """
    if len(set(map(len, entities))) == 1:
        head = _GET + b"$%d\r\n" % (len(pre) + len(entities[0]) + len(suf)) + pre
        return head + (suf + b"\r\n" + head).join(entities) + suf + b"\r\n"
    fixed = len(pre) + len(suf)
    return b"".join([b"%b$%d\r\n%b%b%b\r\n" % (_GET, fixed + len(e), pre, e, suf) for e in entities])


class RawReads:
    """GET pipelines on raw sockets, one link per master, links reused across reads (thread-safe)."""

    def __init__(self, endpoint: RedisEndpoint, settings: IOSettings) -> None:
        self._endpoint = endpoint
        self._settings = settings
        #: False for TLS: the caller keeps the general path.
        self.usable = not endpoint.ssl
        self._idle: list[dict[str, _Link]] = []  # each: one link per master, used by one read at a time
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _take(self) -> dict[str, _Link]:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._pid, self._idle = os.getpid(), []
            return self._idle.pop() if self._idle else {}

    def _give(self, links: dict[str, _Link]) -> None:
        with self._lock:
            if len(self._idle) < self._settings.max_connections:
                self._idle.append(links)
                return
        for link in links.values():
            link.close()

    def close(self) -> None:
        """Close every idle link (a link in use is closed when its read fails, or kept if it succeeds)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for links in idle:
            for link in links.values():
                link.close()

    def read(
        self,
        project: str,
        groups: Sequence[tuple[bytes, Sequence[bytes]]],
        owners: Sequence[list[int]],
        nodes: Sequence[Any],
    ) -> tuple[list[bytes | None], list[int]]:
        """Values of ``groups`` (view id, entities) in order, and the positions a master redirected.

        ``owners[g][j]`` is the index in ``nodes`` (objects with ``.host``, ``.port``, ``.name``) of
        the master serving entity ``j`` of group ``g``; positions count over all groups in order.
        Redirected positions are left ``None``. Grouping, framing and scattering run in C-level
        ``sorted`` / ``map`` / ``join`` calls: no Python bytecode runs per key.
        """
        plan: dict[int, tuple[list[int], list[bytes]]] = {}  # master → positions, framed GETs
        pre = key_prefix(project)
        base = 0
        for (vid, entities), idx in zip(groups, owners, strict=True):
            order = sorted(range(len(idx)), key=idx.__getitem__)  # stable: by master, then position
            suf = key_suffix(vid)
            at = 0
            for k in range(len(nodes)):
                count = idx.count(k)
                if not count:
                    continue
                positions = order[at : at + count]
                at += count
                targets, payload = plan.setdefault(k, ([], []))
                targets += map(base.__add__, positions) if base else positions
                payload.append(framed_gets(pre, suf, list(map(entities.__getitem__, positions))))
            base += len(entities)
        links = self._take()
        healthy = False
        try:
            for k, (_, payload) in plan.items():
                node = nodes[k]
                link = links.get(node.name)
                if link is None:
                    link = links[node.name] = _Link(node.host, node.port, self._endpoint, self._settings)
                link.send(b"".join(payload))
            replies = self._collect([links[nodes[k].name] for k in plan], [t for t, _ in plan.values()])
            healthy = True
        finally:
            if healthy:
                self._give(links)
            else:
                for link in links.values():
                    link.close()
        targets = list(chain.from_iterable(t for t, _ in plan.values()))
        inverse = sorted(range(base), key=targets.__getitem__)
        out: list[Any] = list(map(replies.__getitem__, inverse))
        redirected: list[int] = []
        if not set(map(type, replies)) <= _PLAIN:  # some error replies (rare): find them
            failure = None
            for i, reply in enumerate(out):
                if isinstance(reply, hiredis.ReplyError):
                    out[i] = None
                    if str(reply).startswith(_ELSEWHERE):
                        redirected.append(i)
                    else:
                        failure = failure or f"Redis Cluster at {self._endpoint.address} refused a read: {reply}"
            if failure is not None:
                raise BackendError(failure)
        return out, redirected

    def _collect(self, links: list[_Link], targets: list[list[int]]) -> list[Any]:
        """Every link's replies (as many as its targets), taken as they arrive; concatenated in link order."""
        got: list[list[Any]] = [[] for _ in links]
        if len(links) == 1:  # one master (e.g. one entity): no poll, the socket timeout applies
            link, mine, need = links[0], got[0], len(targets[0])
            while len(mine) < need:
                link.receive()
                mine += iter(link.reader.gets, False)
            return mine
        waiting: dict[int, int] = {}  # fd → link number
        poller = select.poll()
        for n, link in enumerate(links):
            fd = link.sock.fileno()
            waiting[fd] = n
            poller.register(fd, select.POLLIN)
        timeout_ms = int(self._settings.socket_timeout * 1000)
        while waiting:
            events = poller.poll(timeout_ms)
            if not events:
                names = ", ".join(links[n].name for n in waiting.values())
                raise LinkTimeout(f"no reply from {names} within {self._settings.socket_timeout} s")
            for fd, _ in events:
                n = waiting[fd]
                link = links[n]
                link.receive()
                mine = got[n]
                mine += iter(link.reader.gets, False)  # every complete reply (GET never answers an integer)
                if len(mine) >= len(targets[n]):
                    poller.unregister(fd)
                    del waiting[fd]
        return got[0] if len(got) == 1 else list(chain.from_iterable(got))


_ROUTES: dict[int, tuple[Any, tuple[list[Any], list[int]]]] = {}


def routing(cluster: Any) -> tuple[list[Any], list[int]]:
    """The masters, and the index of the one serving each raw CRC16 (65,536 entries; slot = CRC % 16384).

    Indexing by the raw CRC spares the ``% 16384`` per key. Built once per slot map (keyed like
    :func:`.fanout.slot_table`, whose table it derives from).
    """
    table = slot_table(cluster)
    held = _ROUTES.get(id(cluster.nodes_manager))
    if held is not None and held[0] is table:
        return held[1]
    nodes: list[Any] = []
    index: dict[str, int] = {}
    by_slot = []
    for node in table:
        k = index.get(node.name)
        if k is None:
            k = index[node.name] = len(nodes)
            nodes.append(node)
        by_slot.append(k)
    route = (nodes, by_slot * 4)
    if len(_ROUTES) > 8:  # one entry per topology the process has seen (each rediscovery is a new one)
        _ROUTES.clear()
    _ROUTES[id(cluster.nodes_manager)] = (table, route)
    return route
