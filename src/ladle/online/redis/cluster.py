"""I/O against a Redis Cluster (``redis_type: redis_cluster``), on redis-py's cluster client.

Multi-key commands must stay inside one hash slot, and keys are hash-tagged by entity (every view of
one entity is in the same slot). Writes send one ``MSETNX`` or upsert-script call per slot group
(:mod:`.cluster_write`), grouped by the master serving the slot, each master's pipeline in one write
on its own thread (:mod:`.fanout`). Reads send one ``GET`` per key on raw sockets, one pipeline per
master, every master written before any reply is read (:mod:`.cluster_read`, over TLS too); keys a
master redirects take the general path: one ``MGET`` per slot through :func:`.fanout.fan_out` on
redis-py's connections. redis-py's own cluster pipeline refuses ``MGET``
and scripts, hence this small fan-out; it follows MOVED / ASK / TRYAGAIN by refreshing the slot map
and re-sending (every command here is idempotent).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ladle.errors import BackendError, BackendUnavailableError, ConfigError
from ladle.online.redis.cluster_read import LinkLost, LinkTimeout, RawReads, routing
from ladle.online.redis.cluster_write import ClusterUpsert
from ladle.online.redis.conn import RedisEndpoint, unavailable
from ladle.online.redis.fanout import Cluster, fan_out, slot_table
from ladle.online.redis.keys import row_keys_py
from ladle.online.redis.single import IOSettings
from ladle.online.redis.slots import key_slots, row_slots
from ladle.online.redis.write import WriteRows

T = TypeVar("T")
_NODE: Any = ClusterNode
# Rows are spread over 16384 slots and a command cannot span two: large batches keep many rows
# per command (at 16k rows per batch most commands would carry one row).
_CLUSTER_BATCH_ROWS = 131_072
#: Threads serving the masters of one write concurrently (more masters share them).
_NODE_THREADS = 8
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError)


class ClusterNodes:
    """A Redis Cluster reached through its startup nodes."""

    def __init__(self, endpoint: RedisEndpoint, settings: IOSettings) -> None:
        if endpoint.db:
            raise ConfigError("invalid configuration: online_store.connection_string: Redis Cluster has only db=0")
        self.address = endpoint.address
        self.settings = settings
        self._endpoint = endpoint
        self._client: Cluster = None
        self._lock = threading.Lock()
        self._executors: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None
        self._pid = os.getpid()
        # one connection per master kept checked out for reads (used by one read at a time)
        self._read_lock = threading.RLock()  # re-entered when a failed read drops the topology
        self._read_conns: dict[str, tuple[Any, Any]] = {}
        self._reads_pid = os.getpid()
        self._raw = RawReads(endpoint, settings)
        # (project, view id) → whether its last write was mostly new keys (False: straight to the script)
        self._fast_views: dict[tuple[str, bytes], bool] = {}

    def _cluster(self) -> Cluster:
        with self._lock:
            if self._client is None:
                self._client = RedisCluster(
                    startup_nodes=[_NODE(h, p) for h, p in self._endpoint.nodes],
                    socket_timeout=self.settings.socket_timeout,
                    socket_connect_timeout=self.settings.connect_timeout,
                    socket_keepalive=True,
                    max_connections=self.settings.max_connections,
                    ssl=self._endpoint.ssl,
                    **self._endpoint.client_options(),
                )
            return self._client

    def _forget_topology(self) -> None:
        """Drop the client so the next call rediscovers the nodes (after a restart or failover)."""
        with self._lock:
            client, self._client = self._client, None
        with self._read_lock:
            held, self._read_conns = self._read_conns, {}
        self._raw.close()
        for kept_client, conn in held.values():
            conn.disconnect()
            kept_client.connection_pool.release(conn)
        if client is not None:
            client.close()

    def run(self, operation: Callable[[Cluster], T]) -> T:
        """Run ``operation``, translating redis-py's errors into Ladle's."""
        try:
            return operation(self._cluster())
        except (*_UNAVAILABLE, RedisClusterException) as exc:
            self._forget_topology()
            raise unavailable(f"Redis Cluster at {self.address}", exc) from exc
        except ResponseError as exc:
            raise BackendError(f"Redis Cluster at {self.address} refused a command: {exc}") from exc
        except RedisError as exc:
            raise BackendError(f"Redis Cluster at {self.address}: {exc}") from exc

    def execute(self, *args: Any) -> Any:
        """One keyed command (routed by its key)."""
        return self.run(lambda c: c.execute_command(*args))

    def read_rows(self, project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[bytes | None]:
        """Stored rows of ``(view id, entities)`` groups, in order (``None`` when absent).

        One pipeline of GETs per master on raw sockets, plain or TLS (:mod:`.cluster_read`); keys a
        master redirected (a stale slot map) take the general path (:meth:`mget`).
        """
        if not any(entities for _, entities in groups):
            return []
        if self._raw.usable:
            return self._raw_read(project, groups)
        keys: list[bytes] = []
        slots: list[int] = []
        seen: dict[int, list[int]] = {}  # views of one request usually share the entity list
        for vid, entities in groups:
            keys += row_keys_py(project, vid, entities)
            held = seen.get(id(entities))
            if held is None:
                held = seen[id(entities)] = row_slots(project, entities)
            slots += held
        return self.mget(keys, slots)

    def _raw_read(self, project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[bytes | None]:
        """A read on raw sockets; a lost connection is retried once after rediscovering the nodes."""
        for attempt in range(2):
            nodes, by_crc = self.run(routing)  # (re)discovers the topology if it was dropped
            try:
                out, refused = self._raw.read(project, groups, by_crc, nodes)
            except LinkTimeout as exc:
                self._forget_topology()
                raise BackendUnavailableError(f"Redis Cluster at {self.address} timed out: {exc}") from exc
            except LinkLost as exc:
                self._forget_topology()  # a master restarted or failed over: ask the cluster again
                if attempt:
                    raise unavailable(f"Redis Cluster at {self.address}", exc) from exc
                continue
            if refused:  # keys whose slot moved: one GET each, following MOVED / ASK (refreshes the map)
                refused.sort()
                keys = _keys_at(project, groups, refused)
                for i, value in zip(refused, self.mget(keys), strict=True):
                    out[i] = value
            return out
        raise AssertionError("unreachable")  # pragma: no cover

    def mget(self, keys: Sequence[bytes], slots: Sequence[int] | None = None) -> list[bytes | None]:
        """Values of ``keys`` (``None`` when absent; ``slots``: theirs, if known), in one round trip.

        One ``MGET`` per slot; when no two keys share a slot, one ``GET`` per key (the same command
        count, without the one-element arrays).
        """
        if slots is None:
            slots = key_slots(keys)
        if len(set(slots)) == len(slots):  # every key in its own slot (random entities): one GET each
            gets = [(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k),) for k in keys]
            values: list[bytes | None] = self._read(slots, gets)
            return values
        by_slot: dict[int, list[int]] = {}
        for i, slot in enumerate(slots):
            entry = by_slot.get(slot)
            if entry is None:
                by_slot[slot] = [i]
            else:
                entry.append(i)
        order = list(by_slot)
        pieces = [_mget(keys, positions) for positions in by_slot.values()]
        replies = self._read(order, pieces)
        out: list[bytes | None] = [None] * len(keys)
        for positions, values in zip(by_slot.values(), replies, strict=True):
            for i, value in zip(positions, values, strict=True):
                out[i] = value
        return out

    def _read(self, slots: Sequence[int], pieces: list[tuple[bytes]]) -> list[Any]:
        """One read round trip; one caller at a time reuses the held connections, others use the pool."""
        if os.getpid() != self._reads_pid:  # forked: the parent's sockets are not ours
            self._reads_pid, self._read_conns = os.getpid(), {}
        if not self._read_lock.acquire(blocking=False):
            return self.run(lambda c: fan_out(c, (slots, pieces), self.address, table=slot_table(c)))
        try:
            held = self._read_conns
            return self.run(lambda c: fan_out(c, (slots, pieces), self.address, table=slot_table(c), held=held))
        finally:
            self._read_lock.release()

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        with self._lock:
            if self._executors is None or self._pid != os.getpid():  # threads do not survive a fork
                self._pid = os.getpid()
                self._executors = (
                    ThreadPoolExecutor(1, thread_name_prefix="ladle-cluster-batch"),
                    ThreadPoolExecutor(_NODE_THREADS, thread_name_prefix="ladle-cluster-node"),
                )
            return self._executors

    def upsert(self, rows: WriteRows) -> int:
        """Write ``rows`` newest-event-wins, pipelined per master in parallel; return rows written."""
        view = (rows.project, rows.vid)
        settings = self.settings

        def call(cluster: Cluster) -> int:
            write = ClusterUpsert(
                rows.project,
                settings.chunk_rows,
                settings.ttl_ms,
                self._fast_views.get(view, True),
                self.address,
                self._pools(),
            )
            written = write.run(cluster, rows, _CLUSTER_BATCH_ROWS)
            if write.tried:
                self._fast_views[view] = write.went_fast
            return written

        return self.run(call)

    def scan_unlink(
        self, pattern: bytes, count: int, select: Callable[[bytes], bool] | None = None, dry_run: bool = False
    ) -> int:
        """Delete every key matching ``pattern`` (and ``select``, if given) on every primary (SCAN + UNLINK
        in batches); return how many (``dry_run``: only count them)."""

        def call(cluster: Cluster) -> int:
            deleted, batch = 0, []
            for key in cluster.scan_iter(match=pattern, count=count):
                if select is not None and not select(key):
                    continue
                if dry_run:
                    deleted += 1
                    continue
                batch.append(key)
                if len(batch) >= count:
                    deleted += cluster.unlink(*batch)
                    batch = []
            if batch:
                deleted += cluster.unlink(*batch)
            return deleted

        return self.run(call)

    def ping(self) -> None:
        """Raise BackendUnavailableError unless every primary answers PING."""
        self.run(lambda c: c.ping(target_nodes=RedisCluster.PRIMARIES))

    def close(self) -> None:
        """Close every connection to every node (and stop the write threads)."""
        self._forget_topology()
        with self._lock:
            executors, self._executors = self._executors, None
        for executor in executors or ():
            executor.shutdown(wait=False)


def _mget(keys: Sequence[bytes], positions: list[int]) -> tuple[bytes]:
    """``MGET`` of some keys, framed (one key, the usual case with entity-tagged keys: one format)."""
    if len(positions) == 1:
        key = keys[positions[0]]
        return (b"*2\r\n$4\r\nMGET\r\n$%d\r\n%b\r\n" % (len(key), key),)
    body = b"".join([b"$%d\r\n%b\r\n" % (len(keys[i]), keys[i]) for i in positions])
    return (b"*%d\r\n$4\r\nMGET\r\n%b" % (len(positions) + 1, body),)


def _keys_at(project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]], positions: list[int]) -> list[bytes]:
    """Row keys at sorted ``positions`` (counted over all groups in order)."""
    keys: list[bytes] = []
    base, g = 0, 0
    for i in positions:
        while i >= base + len(groups[g][1]):
            base += len(groups[g][1])
            g += 1
        vid, entities = groups[g]
        keys += row_keys_py(project, vid, [entities[i - base]])
    return keys
