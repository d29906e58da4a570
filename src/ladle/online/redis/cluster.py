"""I/O against a Redis Cluster (``redis_type: redis_cluster``), on redis-py's cluster client.

Multi-key commands must stay inside one hash slot, so keys are grouped by slot: reads send one
``MGET`` per slot and writes one upsert script call per slot (at most ``chunk_rows`` rows). Because
keys are hash-tagged by entity, every view of one entity is in the same slot. Commands are grouped
by the node serving their slot and written to every node before any reply is read
(:func:`_fan_out`), so a request costs one round trip with the nodes answering in parallel.
redis-py's own cluster pipeline refuses ``MGET`` and scripts, hence this small fan-out; it follows
MOVED / ASK / TRYAGAIN by refreshing the slot map and re-sending (every command here is idempotent).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ladle.errors import BackendError, BackendUnavailableError, ConfigError
from ladle.online.redis.conn import RedisEndpoint
from ladle.online.redis.keys import row_keys_py
from ladle.online.redis.resp import resp_command
from ladle.online.redis.scripts import UPSERT_LUA, UPSERT_SHA
from ladle.online.redis.single import IOSettings
from ladle.online.redis.write import WriteRows

T = TypeVar("T")
# redis-py's cluster client is largely untyped; this is the boundary where that stops.
Cluster = Any
_NODE: Any = ClusterNode
_ATTEMPTS = 5
# Rows are spread over 16384 slots and a script call cannot span two: large batches keep many rows
# per call (at 16k rows per batch most calls would carry one row).
_CLUSTER_BATCH_ROWS = 262_144
_REDIRECTED = (MovedError, AskError, TryAgainError)
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError)


@dataclass(frozen=True)
class _Command:
    slot: int
    args: tuple[bytes, ...]


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
        if client is not None:
            client.close()

    def run(self, operation: Callable[[Cluster], T]) -> T:
        """Run ``operation``, translating redis-py's errors into Ladle's."""
        try:
            return operation(self._cluster())
        except (*_UNAVAILABLE, RedisClusterException) as exc:
            self._forget_topology()
            raise BackendUnavailableError(f"Redis Cluster at {self.address} is unavailable: {exc}") from exc
        except ResponseError as exc:
            raise BackendError(f"Redis Cluster at {self.address} refused a command: {exc}") from exc
        except RedisError as exc:
            raise BackendError(f"Redis Cluster at {self.address}: {exc}") from exc

    def execute(self, *args: Any) -> Any:
        """One keyed command (routed by its key)."""
        return self.run(lambda c: c.execute_command(*args))

    def read_rows(self, project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[bytes | None]:
        """Stored rows of ``(view id, entities)`` groups, in order (``None`` when absent)."""
        keys: list[bytes] = []
        for vid, entities in groups:
            keys += row_keys_py(project, vid, entities)
        return self.mget(keys) if keys else []

    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Values of ``keys`` (``None`` when absent): one MGET per slot, one round trip."""
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(key_slot(key), []).append(i)
        commands = [_Command(slot, (b"MGET", *(keys[i] for i in pos))) for slot, pos in by_slot.items()]
        replies = self.run(lambda c: _fan_out(c, commands, self.address))
        out: list[bytes | None] = [None] * len(keys)
        for positions, values in zip(by_slot.values(), replies, strict=True):
            for i, value in zip(positions, values, strict=True):
                out[i] = value
        return out

    def upsert(self, rows: WriteRows) -> int:
        """Send every row through the upsert script, one call per slot group; return rows written."""
        ttl = b"%d" % self.settings.ttl_ms

        def call(cluster: Cluster) -> int:
            for key_list, blob_list in rows.python(_CLUSTER_BATCH_ROWS):
                commands = [
                    _Command(slot, (b"EVALSHA", UPSERT_SHA, b"%d" % len(ks), *ks, ttl, _unique_flag(ks), *bs))
                    for slot, ks, bs in _slot_groups(key_list, blob_list, self.settings.chunk_rows)
                ]
                rows.acknowledge(sum(int(r) for r in _fan_out(cluster, commands, self.address)))
            return rows.written

        return self.run(call)

    def scan_unlink(self, pattern: bytes, count: int) -> int:
        """Delete every key matching ``pattern`` on every primary (SCAN + UNLINK in batches)."""

        def call(cluster: Cluster) -> int:
            deleted, batch = 0, []
            for key in cluster.scan_iter(match=pattern, count=count):
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
        """Close every connection to every node."""
        self._forget_topology()


def _unique_flag(keys: list[bytes]) -> bytes:
    return b"1" if len(set(keys)) == len(keys) else b"0"


def _slot_groups(keys: list[bytes], blobs: list[bytes], chunk_rows: int) -> list[tuple[int, list[bytes], list[bytes]]]:
    """Rows grouped by hash slot, at most ``chunk_rows`` per group."""
    slots = np.fromiter(map(key_slot, keys), dtype=np.int64, count=len(keys))
    order = np.argsort(slots, kind="stable")
    bounds = np.flatnonzero(np.diff(slots[order])) + 1
    groups = []
    for group in np.split(order, bounds):
        for start in range(0, len(group), chunk_rows):
            chosen = group[start : start + chunk_rows].tolist()
            groups.append((int(slots[chosen[0]]), [keys[i] for i in chosen], [blobs[i] for i in chosen]))
    return groups


def _fan_out(cluster: Cluster, commands: list[_Command], address: str) -> list[Any]:
    """Replies of ``commands``, each sent to the node serving its slot; all nodes written first."""
    replies: list[Any] = [None] * len(commands)
    pending = list(range(len(commands)))
    for attempt in range(_ATTEMPTS):
        by_node: dict[str, tuple[Any, list[int]]] = {}
        owner: dict[int, Any] = {}  # slot → node, looked up once per slot
        for i in pending:
            slot = commands[i].slot
            node = owner.get(slot)
            if node is None:
                node = owner[slot] = cluster.nodes_manager.get_node_from_slot(slot)
            by_node.setdefault(node.name, (node, []))[1].append(i)
        retry, moved = _send_and_read(cluster, by_node, commands, replies)
        if not retry:
            return replies
        if moved:
            cluster.nodes_manager.initialize()
            time.sleep(0.05 * attempt)
        pending = retry
    raise BackendError(f"Redis Cluster at {address}: slots kept moving during the request")


def _send_and_read(
    cluster: Cluster, by_node: dict[str, tuple[Any, list[int]]], commands: list[_Command], replies: list[Any]
) -> tuple[list[int], bool]:
    """One round trip to every node; returns the commands to re-send and whether a slot moved."""
    sent: list[tuple[Any, Any, list[int]]] = []
    retry: list[int] = []
    moved = False
    try:
        for node, indices in by_node.values():
            client = cluster.get_redis_connection(node)
            conn = client.connection_pool.get_connection()
            sent.append((client, conn, indices))
            # bytes-only arguments, framed here (redis-py's packer costs ~1 µs per argument), one send per node
            conn.send_packed_command([b"".join([resp_command(*commands[i].args) for i in indices])], check_health=False)
        while sent:
            client, conn, indices = sent[0]
            noscript = False
            for i in indices:
                try:
                    replies[i] = conn.read_response()
                except NoScriptError:
                    retry.append(i)
                    noscript = True
                except _REDIRECTED:
                    retry.append(i)
                    moved = True
            sent.pop(0)
            client.connection_pool.release(conn)
            if noscript:  # first use of this node, or it restarted
                client.script_load(UPSERT_LUA)
    finally:
        for client, conn, _ in sent:  # replies not read: the connection cannot be reused
            conn.disconnect()
            client.connection_pool.release(conn)
    return retry, moved
