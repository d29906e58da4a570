"""Redis Cluster specifics of the Redis online store, on a real 3-master cluster (docs/redis.md)."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from ladle.config import load_config
from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.online.base import ReadRequest
from ladle.online.redis import cluster_read
from ladle.online.redis.store import RedisOnlineStore
from ladle.types import Float64, String

pytestmark = pytest.mark.redis_cluster

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SOURCE = FileSource(path="ticks.parquet", timestamp_field="event_timestamp")
COMMODITY = Entity(name="commodity", join_keys=["code"], value_type=String)


def view(name: str) -> FeatureView:
    return FeatureView(name=name, source=SOURCE, entities=[COMMODITY], schema=[Field(name="price", dtype=Float64)])


def rows(codes: list[str], hour: int = 0) -> pa.Table:
    return pa.table(
        {
            "code": codes,
            "event_timestamp": pa.array([T0 + timedelta(hours=hour)] * len(codes), pa.timestamp("us", tz="UTC")),
            "price": [float(hour * 1000 + i) for i in range(len(codes))],
        }
    )


@pytest.fixture
def project() -> str:
    return f"c{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(redis_cluster_nodes: str, project: str) -> Iterator[RedisOnlineStore]:
    config = load_config(
        {
            "project": "unused",
            "online_store": {"type": "redis", "connection_string": redis_cluster_nodes, "redis_type": "redis_cluster"},
        }
    )
    s = RedisOnlineStore(config)
    yield s
    s.teardown(project, [])
    s.close()


@pytest.fixture
def cluster(redis_cluster_nodes: str) -> Any:
    nodes = [ClusterNode(h, int(p)) for h, p in (n.split(":") for n in redis_cluster_nodes.split(","))]
    client = RedisCluster(startup_nodes=nodes)
    yield client
    client.close()


def vid(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=6).hexdigest().encode()


def test_every_view_of_an_entity_is_in_one_slot(store: RedisOnlineStore, cluster: Any, project: str) -> None:
    codes = [f"CMD{i}" for i in range(200)]
    for name in ("prices", "volumes", "weather"):
        store.write(project, view(name), rows(codes))
    slots_seen = set()
    for code in codes:
        keys = [b"{%s:%s}:%s" % (project.encode(), code.encode(), vid(n)) for n in ("prices", "volumes", "weather")]
        slots = {cluster.cluster_keyslot(k) for k in keys}  # asked of the server, not computed here
        assert len(slots) == 1
        assert all(cluster.exists(k) for k in keys)
        slots_seen |= slots
    owners = {cluster.nodes_manager.get_node_from_slot(s).name for s in slots_seen}
    assert len(owners) == 3  # the entities really are spread over the three masters


def test_large_write_and_read_across_nodes(store: RedisOnlineStore, project: str) -> None:
    codes = [f"CMD{i:05d}" for i in range(30_000)]
    assert store.write(project, view("prices"), rows(codes, hour=2)) == 30_000
    assert store.write(project, view("prices"), rows(codes[::2], hour=1)) == 0  # older: every row dropped
    requests = [ReadRequest(view("prices"), ["price"], {"code": [*codes[::7], "absent"]})]
    got = store.read(project, requests)[0]
    assert got.values["price"] == [2000.0 + i for i in range(0, 30_000, 7)] + [None]


def test_replies_larger_than_one_receive_buffer(store: RedisOnlineStore, project: str) -> None:
    # ~2 KB per row, 300 rows: each master's reply is ~200 KB, several times the raw reader's buffer
    notes = FeatureView(
        name="notes",
        source=SOURCE,
        entities=[COMMODITY],
        schema=[Field(name="note", dtype=String), Field(name="price", dtype=Float64)],
    )
    codes = [f"CMD{i:04d}" for i in range(300)]
    texts = [f"{code}:" + "abcdefghij"[i % 10] * (2000 + i) for i, code in enumerate(codes)]
    table = pa.table(
        {
            "code": codes,
            "event_timestamp": pa.array([T0] * len(codes), pa.timestamp("us", tz="UTC")),
            "note": texts,
            "price": [float(i) for i in range(len(codes))],
        }
    )
    store.write(project, notes, table)
    assert cluster_read._RECV < 200_000
    order = codes[::-1]
    got = store.read(project, [ReadRequest(notes, ["note", "price"], {"code": order})])[0]
    assert got.values["note"] == texts[::-1]
    assert got.values["price"] == [float(i) for i in reversed(range(len(codes)))]


def test_a_read_is_one_round_trip_per_node(
    store: RedisOnlineStore, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = [f"CMD{i}" for i in range(100)]
    store.write(project, view("prices"), rows(codes))
    request = [ReadRequest(view("prices"), ["price"], {"code": codes})]
    store.read(project, request)
    sends: list[tuple[str, int]] = []
    original = cluster_read._Link.send

    def spy(link: Any, payload: bytes) -> None:
        sends.append((link.name, payload.count(b"*2\r\n$3\r\nGET\r\n")))
        original(link, payload)

    monkeypatch.setattr(cluster_read._Link, "send", spy)
    got = store.read(project, request)[0]
    assert got.values["price"] == [float(i) for i in range(100)]
    assert len(sends) == 3 and len({name for name, _ in sends}) == 3  # one send per master
    assert sum(gets for _, gets in sends) == 100  # one GET per key (every entity in its own slot)


def test_teardown_on_a_cluster_removes_only_the_project(store: RedisOnlineStore, cluster: Any, project: str) -> None:
    other = project + "x"
    for p in (project, other):
        store.write(p, view("prices"), rows([f"CMD{i}" for i in range(300)]))
    try:
        store.teardown(project, [])
        assert list(cluster.scan_iter(match=f"{{{project}:*", target_nodes=RedisCluster.PRIMARIES)) == []
        assert len(list(cluster.scan_iter(match=f"{{{other}:*", target_nodes=RedisCluster.PRIMARIES))) == 301
    finally:
        store.teardown(other, [])


def test_ping(store: RedisOnlineStore) -> None:
    store.ping()


def reads_during(
    read_once: Callable[[], Any], want: Any, change: Callable[[], Any]
) -> tuple[list[BaseException], list[Any], Any]:
    """Run ``read_once`` in a loop on a thread while ``change()`` runs (after 50 ms, with 200 ms of reads
    after it); return the errors the reads raised, the answers that differed from ``want``, and what
    ``change`` returned."""
    errors: list[BaseException] = []
    wrong: list[Any] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                got = read_once()
            except BaseException as exc:
                errors.append(exc)
                return
            if got != want:
                wrong.append(got)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        time.sleep(0.05)
        changed = change()
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    return errors, wrong, changed


def _move_slot(cluster: Any, slot: int, connect: Callable[[str, int], redis.Redis] | None = None) -> tuple[Any, Any]:
    """Migrate ``slot`` (and its keys) to another master, as a resharding does; return (source, target).

    ``connect(host, port)`` opens a client of one node (plain by default; TLS clusters pass their own).
    """
    connect = connect or (lambda host, port: redis.Redis(host=host, port=port))
    source = cluster.nodes_manager.get_node_from_slot(slot)
    target = next(n for n in cluster.get_primaries() if n.name != source.name)
    src = connect(source.host, source.port)
    dst = connect(target.host, target.port)
    src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000):
        src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
    for node in cluster.get_primaries():
        connect(node.host, node.port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
    return source, target


def test_writes_and_reads_follow_a_moved_slot(
    store: RedisOnlineStore, cluster: Any, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a resharding the store's slot map is stale: MOVED replies re-route (writes and reads)."""
    codes = [f"CMD{i:05d}" for i in range(5_000)]
    assert store.write(project, view("prices"), rows(codes, hour=1)) == 5_000
    moved = codes[17]
    slot = cluster.keyslot(f"{{{project}:{moved}}}")
    _, target = _move_slot(cluster, slot)
    refreshes: list[int] = []
    original = redis.cluster.NodesManager.initialize

    def counting(manager: Any, *args: Any, **kwargs: Any) -> Any:
        refreshes.append(1)
        return original(manager, *args, **kwargs)

    monkeypatch.setattr(redis.cluster.NodesManager, "initialize", counting)
    try:
        assert store.write(project, view("prices"), rows(codes, hour=2)) == 5_000  # every row compared, all newer
        got = store.read(project, [ReadRequest(view("prices"), ["price"], {"code": codes})])[0]
        assert got.values["price"] == [2000.0 + i for i in range(5_000)]
        fresh = [f"NEW{i:05d}" for i in range(3_000)] + [moved + "x"]
        assert store.write(project, view("prices"), rows(fresh, hour=3)) == len(fresh)  # new keys: MSETNX
        got = store.read(project, [ReadRequest(view("prices"), ["price"], {"code": [moved, *fresh]})])[0]
        assert got.values["price"] == [2017.0, *(3000.0 + i for i in range(len(fresh)))]
        assert refreshes, "the slot map was never refreshed: the MOVED path did not run"
    finally:
        monkeypatch.undo()
        _move_slot(RedisCluster(host=target.host, port=target.port), slot)  # give it back
