"""Redis Cluster reads on raw sockets (``online/redis/cluster_read.py``), on real 3-master clusters.

Replies arriving out of order across masters, a slot moved while reads run, a master paused past
the socket timeout, a master killed in the middle of a read (a clear error, then recovery once it is
back), and password authentication. Tests that stop or reconfigure masters use a cluster of their
own, so the session's shared cluster is never disturbed.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from backends.redis_cluster import LocalRedisCluster, binaries_available
from backends.test_redis_cluster_store import _move_slot, reads_during
from ladle.config import load_config
from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.errors import BackendUnavailableError
from ladle.online.base import ReadRequest
from ladle.online.redis import cluster_read
from ladle.online.redis.cluster import ClusterNodes
from ladle.online.redis.store import RedisOnlineStore
from ladle.types import Float64, String

pytestmark = pytest.mark.redis_cluster

T0 = datetime(2024, 1, 1, tzinfo=UTC)
VIEW = FeatureView(
    name="prices",
    source=FileSource(path="ticks.parquet", timestamp_field="event_timestamp"),
    entities=[Entity(name="commodity", join_keys=["code"], value_type=String)],
    schema=[Field(name="price", dtype=Float64)],
)
CODES = [f"CMD{i:05d}" for i in range(2_000)]


def rows(codes: list[str]) -> pa.Table:
    return pa.table(
        {
            "code": codes,
            "event_timestamp": pa.array([T0 + timedelta(hours=1)] * len(codes), pa.timestamp("us", tz="UTC")),
            "price": [float(i) for i in range(len(codes))],
        }
    )


def expected(codes: list[str]) -> list[float]:
    """Reference values: the price written for each code is its index in CODES."""
    return [float(CODES.index(c)) for c in codes]


def open_store(nodes: str, **extra: Any) -> RedisOnlineStore:
    block = {"type": "redis", "connection_string": nodes, "redis_type": "redis_cluster", **extra}
    return RedisOnlineStore(load_config({"project": "unused", "online_store": block}))


def read(store: RedisOnlineStore, project: str, codes: list[str]) -> list[Any]:
    return store.read(project, [ReadRequest(VIEW, ["price"], {"code": codes})])[0].values["price"]


def assert_wrong_password_refused(nodes: str, project: str) -> None:
    """A store with a wrong password fails with a typed error that repeats neither password."""
    wrong = open_store(nodes + ",password=wrong-pw")
    try:
        with pytest.raises(BackendUnavailableError) as caught:
            read(wrong, project, CODES[:10])
        assert "wrong-pw" not in str(caught.value) and "s3cret" not in str(caught.value)
    finally:
        wrong.close()


def client(nodes: str) -> Any:
    return RedisCluster(startup_nodes=[ClusterNode(h, int(p)) for h, p in (n.split(":") for n in nodes.split(","))])


@pytest.fixture
def project() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(redis_cluster_nodes: str, project: str) -> Iterator[RedisOnlineStore]:
    s = open_store(redis_cluster_nodes)
    s.write(project, VIEW, rows(CODES))
    yield s
    s.teardown(project, [])
    s.close()


@pytest.fixture
def own_cluster() -> Iterator[LocalRedisCluster]:
    """A 3-master cluster for this test alone (it gets paused, killed or password-protected)."""
    if not binaries_available():
        pytest.skip("SERVICE DOWN: redis-server / redis-cli not on PATH")
    cluster = LocalRedisCluster(Path(tempfile.mkdtemp(prefix="ladle-own-cluster-"))).start()
    yield cluster
    cluster.stop()


def owner_of(nodes: str, project: str, code: str) -> tuple[str, int]:
    c = client(nodes)
    try:
        node = c.nodes_manager.get_node_from_slot(c.keyslot(f"{{{project}:{code}}}"))
        return node.host, node.port
    finally:
        c.close()


@pytest.mark.parametrize("paused", ["first", "last"])
@pytest.mark.parametrize("spin_ns", [0, 200_000], ids=["sleeping-poll", "spin-then-poll"])
def test_replies_out_of_order_across_masters(
    store: RedisOnlineStore,
    redis_cluster_nodes: str,
    project: str,
    monkeypatch: pytest.MonkeyPatch,
    spin_ns: int,
    paused: str,
) -> None:
    """The master written first (or last) answers last (paused): the read waits for it and every reply
    lands in place (with the opt-in non-sleeping poll too: it spins past its budget, then sleeps in
    poll). The read watches the last-written master still waiting, so a paused first master is waited
    for after the others, a paused last one before them."""
    monkeypatch.setattr(cluster_read, "_SPIN_NS", spin_ns)
    codes = CODES[:300]
    assert read(store, project, codes) == expected(codes)  # links open, routing known
    sends: list[str] = []
    arrivals: list[str] = []
    send, receive = cluster_read._Link.send, cluster_read._Link.receive

    def spy_send(link: Any, payload: bytes) -> None:
        sends.append(link.name)
        send(link, payload)

    def spy_receive(link: Any) -> bool:
        got = receive(link)
        if got:  # a try that found nothing yet is not an arrival
            arrivals.append(link.name)
        return got

    monkeypatch.setattr(cluster_read._Link, "send", spy_send)
    monkeypatch.setattr(cluster_read._Link, "receive", spy_receive)
    # the masters in the order they are written: replay the routing the read will use
    nodes, _ = store._io.run(cluster_read.routing)  # type: ignore[union-attr]
    owners = {owner_of(redis_cluster_nodes, project, c) for c in codes}
    written = [n for n in nodes if (n.host, n.port) in owners]
    slow = written[0] if paused == "first" else written[-1]
    redis.Redis(host=slow.host, port=slow.port).execute_command("CLIENT", "PAUSE", 300, "ALL")
    started = time.monotonic()
    got = read(store, project, codes)
    assert time.monotonic() - started >= 0.25  # really waited for the paused master
    assert got == expected(codes)
    assert sends == [n.name for n in written] and len(sends) == 3
    assert arrivals[-1] == slow.name and set(arrivals[:2]) == set(sends) - {slow.name}


def test_a_slot_moved_during_concurrent_reads(
    store: RedisOnlineStore, redis_cluster_nodes: str, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads running while a slot migrates: MOVED / ASK replies take the general path, values stay right."""
    c = client(redis_cluster_nodes)
    moved = CODES[123]
    slot = c.keyslot(f"{{{project}:{moved}}}")
    redirected: list[int] = []
    original = RedisOnlineStore.read

    plain_mget = ClusterNodes.mget

    def counting(nodes: Any, keys: Any, slots: Any = None) -> Any:
        redirected.append(len(keys))
        return plain_mget(nodes, keys, slots)

    monkeypatch.setattr(ClusterNodes, "mget", counting)
    sample = [moved, *CODES[:200]]
    errors, wrong, (_, target) = reads_during(
        lambda: original(store, project, [ReadRequest(VIEW, ["price"], {"code": sample})])[0].values["price"],
        expected(sample),
        lambda: _move_slot(c, slot),
    )
    try:
        assert not errors and not wrong
        assert redirected, "no read met the moved slot: the redirection path did not run"
        assert read(store, project, sample) == expected(sample)  # routed by the refreshed map now
        before = len(redirected)
        assert read(store, project, sample) == expected(sample)
        assert len(redirected) == before  # no more redirections once the map is fresh
    finally:
        monkeypatch.undo()
        _move_slot(RedisCluster(host=target.host, port=target.port), slot)  # give it back
        c.close()


def test_a_master_killed_mid_read_then_back(own_cluster: LocalRedisCluster, project: str) -> None:
    """A master dies while a read waits on it: a clear error (after one reconnect); back, reads recover."""
    nodes = own_cluster.connection_string
    store = open_store(nodes)
    try:
        store.write(project, VIEW, rows(CODES))
        codes = CODES[:300]
        assert read(store, project, codes) == expected(codes)
        host, port = owner_of(nodes, project, codes[0])
        victim = own_cluster.ports.index(port)
        redis.Redis(host=host, port=port).execute_command("CLIENT", "PAUSE", 5000, "ALL")
        killer = threading.Timer(0.2, own_cluster._procs[victim].send_signal, (signal.SIGKILL,))
        killer.start()
        with pytest.raises(BackendUnavailableError) as caught:
            read(store, project, codes)
        killer.join()
        message = str(caught.value)
        assert "unavailable" in message and f"127.0.0.1:{port}" in message
        restart(own_cluster, victim)
        lost = {c for c in codes if owner_of(nodes, project, c) == (host, port)}  # no persistence: gone
        got = read(store, project, codes)  # the same store instance
        assert got == [None if c in lost else v for c, v in zip(codes, expected(codes), strict=True)]
        store.write(project, VIEW, rows(CODES))
        assert read(store, project, codes) == expected(codes)
        # restarted between two reads: the held link is dead, the read reconnects once and succeeds
        own_cluster._procs[victim].send_signal(signal.SIGKILL)
        restart(own_cluster, victim)
        got = read(store, project, codes)
        assert got == [None if c in lost else v for c, v in zip(codes, expected(codes), strict=True)]
    finally:
        store.close()


def restart(cluster: LocalRedisCluster, victim: int) -> None:
    """Start a killed master again on its port (its nodes file makes it rejoin with its slots)."""
    cluster._procs[victim].wait()
    cluster._procs[victim] = cluster._spawn(cluster.ports[victim])
    deadline = time.monotonic() + 30
    while True:
        try:
            if cluster._ok():
                return
        except (redis.RedisError, OSError):
            pass
        assert time.monotonic() < deadline, "the restarted master did not rejoin"
        time.sleep(0.1)


def test_a_paused_master_times_out_then_reads_resume(own_cluster: LocalRedisCluster, project: str) -> None:
    nodes = own_cluster.connection_string
    store = open_store(nodes, socket_timeout_seconds=0.3)
    try:
        store.write(project, VIEW, rows(CODES))
        codes = CODES[:300]
        host, port = owner_of(nodes, project, codes[0])
        redis.Redis(host=host, port=port).execute_command("CLIENT", "PAUSE", 1500, "ALL")
        with pytest.raises(BackendUnavailableError, match="timed out"):
            read(store, project, codes)  # three masters, one silent (the poll times out)
        with pytest.raises(BackendUnavailableError, match="timed out"):
            read(store, project, codes[:1])  # that master alone (the socket times out)
        time.sleep(1.5)
        assert read(store, project, codes) == expected(codes)
    finally:
        store.close()


def test_password_authentication(own_cluster: LocalRedisCluster, project: str) -> None:
    nodes = own_cluster.connection_string
    for port in own_cluster.ports:
        redis.Redis(port=port).config_set("requirepass", "s3cret-pw")
    store = open_store(nodes + ",password=s3cret-pw")
    try:
        store.write(project, VIEW, rows(CODES))
        assert read(store, project, CODES[:300]) == expected(CODES[:300])
    finally:
        store.close()
    assert_wrong_password_refused(nodes, project)
