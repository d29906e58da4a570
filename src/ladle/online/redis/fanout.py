"""Commands spread over a Redis Cluster's masters: one pipeline per node, the nodes served concurrently.

Each command carries its slot and its RESP bytes (framed by the caller, no per-argument packing).
Commands are grouped by the node serving their slot; every node gets its whole pipeline in one
write, then its replies are read. With ``parallel`` each node is written and read on its own thread
(large writes: while one node's socket drains, the others work); otherwise all nodes are written
first and read in turn (small reads: the nodes answer meanwhile, threads would cost more than they
save). Replies are parsed by hiredis; the ones already buffered are taken straight from its reader.

A MOVED / ASK / TRYAGAIN reply refreshes the slot map and re-sends that command to its new owner
(every command sent here is idempotent); NOSCRIPT loads the upsert script on that node and re-sends.
Other error replies are raised after the node's pipeline is read to the end, so connections stay
usable. A dropped connection is raised to the caller (:meth:`.cluster.ClusterNodes.run`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError, TryAgainError

from ladle.errors import BackendError
from ladle.online.redis.scripts import UPSERT_LUA

try:  # hiredis's "incomplete reply" marker as redis-py configures its reader
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _INCOMPLETE
except ImportError:  # pragma: no cover - another redis-py layout: always go through read_response
    _INCOMPLETE = object()

# redis-py's cluster client is largely untyped; this is the boundary where that stops.
Cluster = Any
ATTEMPTS = 5
_REDIRECTED = (MovedError, AskError, TryAgainError)


@dataclass(frozen=True)
class Command:
    """One command for the node serving ``slot``, already framed as RESP (one piece or several)."""

    slot: int
    payload: bytes | memoryview


def slot_table(cluster: Cluster) -> list[Any]:
    """The node serving each slot, per the client's current slot map (for routing many commands).

    Built once per slot map: redis-py replaces ``nodes_manager.slots_cache`` when it refreshes the
    map (after a MOVED, here or in its own commands), which is what the cached table is keyed on.
    Only the last few clients' tables are kept (see ``_KEPT``).
    """
    manager = cluster.nodes_manager
    cache = manager.slots_cache
    held = _TABLES.get(id(manager))
    if held is not None and held[0] is cache:
        return held[1]
    table = [manager.get_node_from_slot(slot) for slot in range(16384)]
    with _TABLES_LOCK:
        _TABLES.pop(id(manager), None)  # re-inserted last: the oldest entries go first
        _TABLES[id(manager)] = (cache, table)
        while len(_TABLES) > _KEPT:
            del _TABLES[next(iter(_TABLES))]
    return table


#: Client (nodes manager) id → its slot map and the table built from it. Each rediscovery of the
#: topology (a timeout, a failover) and each opened store makes a new client; an entry holds the
#: client's nodes (and their connection pools) alive, so only the newest ``_KEPT`` are kept. Weak
#: references would not do: the table's nodes lead back to their manager.
_KEPT = 8
_TABLES: dict[int, tuple[Any, list[Any]]] = {}
_TABLES_LOCK = threading.Lock()  # only taken to add (once per slot map); lookups go without it


def fan_out(
    cluster: Cluster,
    commands: Sequence[Command] | tuple[Sequence[int], Sequence[Sequence[bytes | memoryview]]],
    address: str,
    pool: Executor | None = None,
    table: Sequence[Any] | None = None,
    held: dict[str, tuple[Any, Any]] | None = None,
) -> list[Any]:
    """Replies of ``commands`` in order; each node's pipeline in one write (see the module docstring).

    ``commands`` are :class:`Command` objects, or (slots, pieces) lists where command ``i`` is the
    concatenation of ``pieces[i]`` (writes: a header and a slice of the batch, no copy until the
    node's pipeline is joined). ``table`` (from :func:`slot_table`) routes without per-slot lookups;
    ``held`` keeps a connection per node between calls (see :func:`_exchange`).
    """
    if isinstance(commands, tuple):
        slots, pieces = commands
    else:
        slots = [c.slot for c in commands]
        pieces = [(c.payload,) for c in commands]
    replies: list[Any] = [None] * len(slots)
    pending = list(range(len(slots)))
    for attempt in range(ATTEMPTS):
        by_node: dict[str, tuple[Any, list[int]]] = {}
        manager = cluster.nodes_manager
        if table is not None:
            for i in pending:
                node = table[slots[i]]
                entry = by_node.get(node.name)
                if entry is None:
                    entry = by_node[node.name] = (node, [])
                entry[1].append(i)
        else:
            owner: dict[int, Any] = {}  # slot → node, looked up once per slot
            for i in pending:
                slot = slots[i]
                node = owner.get(slot)
                if node is None:
                    node = owner[slot] = manager.get_node_from_slot(slot)
                by_node.setdefault(node.name, (node, []))[1].append(i)
        outcomes = _exchange(cluster, list(by_node.values()), pieces, replies, pool, held)
        retry = [i for moved, noscript in outcomes for i in (*moved, *noscript)]
        if not retry:
            return replies
        if any(moved for moved, _ in outcomes):
            manager.initialize()
            table = None  # the map changed: route afresh
            time.sleep(0.05 * attempt)
        pending = sorted(retry)
    raise BackendError(f"Redis Cluster at {address}: slots kept moving during the request")


def _joined(pieces: Sequence[Sequence[bytes | memoryview]], indices: list[int]) -> bytes:
    return b"".join([piece for i in indices for piece in pieces[i]])


def _exchange(
    cluster: Cluster,
    nodes: list[tuple[Any, list[int]]],
    pieces: Sequence[Sequence[bytes | memoryview]],
    replies: list[Any],
    pool: Executor | None,
    held: dict[str, tuple[Any, Any]] | None = None,
) -> list[tuple[list[int], list[int]]]:
    """One round trip with every node; per node, the commands redirected and those that met NOSCRIPT.

    ``held`` (node name → client and connection) keeps one connection per node checked out between
    calls, sparing the pool's checkout (~10 µs a node); the caller makes sure one call uses it at a time.
    """
    if pool is not None and len(nodes) > 1:
        futures = [pool.submit(_node_round_trip, cluster, node, idx, pieces, replies) for node, idx in nodes]
        return [f.result() for f in futures]
    opened = []
    try:
        for node, indices in nodes:
            client = cluster.get_redis_connection(node)
            kept = held.get(node.name) if held is not None else None
            if kept is not None and kept[0] is client:
                conn = kept[1]
            else:
                conn = client.connection_pool.get_connection()
                if held is not None:
                    if kept is not None:  # the client was replaced (topology refresh): drop the old one
                        _drop(kept)
                    held[node.name] = (client, conn)
            opened.append((client, conn, indices))
            conn.send_packed_command([_joined(pieces, indices)], check_health=False)
        out = []
        while opened:
            client, conn, indices = opened[0]
            out.append(_read(client, conn, indices, replies))
            opened.pop(0)
            if held is None:
                client.connection_pool.release(conn)
        return out
    finally:
        for client, conn, _ in opened:  # replies not read: the connection cannot be reused
            if held is not None:
                held.pop(next((name for name, kept in held.items() if kept[1] is conn), ""), None)
            _drop((client, conn))


def _drop(kept: tuple[Any, Any]) -> None:
    client, conn = kept
    conn.disconnect()
    client.connection_pool.release(conn)


def _node_round_trip(
    cluster: Cluster, node: Any, indices: list[int], pieces: Sequence[Sequence[bytes | memoryview]], replies: list[Any]
) -> tuple[list[int], list[int]]:
    client = cluster.get_redis_connection(node)
    conn = client.connection_pool.get_connection()
    healthy = False
    try:
        conn.send_packed_command([_joined(pieces, indices)], check_health=False)
        result = _read(client, conn, indices, replies)
        healthy = True
        return result
    finally:
        if not healthy:
            conn.disconnect()
        client.connection_pool.release(conn)


def _read(client: Any, conn: Any, indices: list[int], replies: list[Any]) -> tuple[list[int], list[int]]:
    """Read one reply per index into ``replies``; return (redirected, noscript) indices."""
    moved: list[int] = []
    noscript: list[int] = []
    failure: ResponseError | None = None
    reader = getattr(getattr(conn, "_parser", None), "_reader", None)  # hiredis's, when redis-py uses it
    for i in indices:
        reply: Any = reader.gets() if reader is not None else _INCOMPLETE
        if reply is _INCOMPLETE or reply is False:
            try:
                reply = conn.read_response()
            except ResponseError as exc:
                reply = exc
        if isinstance(reply, NoScriptError):
            noscript.append(i)
        elif isinstance(reply, _REDIRECTED):
            moved.append(i)
        elif isinstance(reply, ResponseError):
            failure = failure or reply
        else:
            replies[i] = reply
    if noscript:  # first use of this node, or it restarted
        client.script_load(UPSERT_LUA)
    if failure is not None:
        raise failure
    return moved, noscript
