"""Redis Cluster reads on raw sockets over TLS (``online/redis/cluster_read.py``), on real TLS clusters.

The raw path's own TLS: it is taken (one pipeline per master on TLS sockets, one SSLContext for all);
the ``ssl_*`` options mean to it what they mean to redis-py (both tried against the same servers);
decrypted bytes the TLS layer holds are read before ``poll`` sleeps; the handshake is bounded by the
connect timeout. Then what tests/backends/test_redis_cluster_reads.py checks on plain sockets, over
TLS: replies out of order across masters, a slot moved while reads run, a master killed in a read and
restarted, a password. Tests that stop or reconfigure masters use a TLS cluster of their own.
"""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from backends.conftest import scratch, tls_service
from backends.redis_cluster import LocalRedisCluster
from backends.redis_tls import TlsFiles, TlsRedisServer, TlsSends
from backends.test_redis_cluster_reads import (
    CODES,
    VIEW,
    assert_wrong_password_refused,
    expected,
    open_store,
    read,
    restart,
    rows,
)
from backends.test_redis_cluster_store import _move_slot, reads_during
from ladle.config import load_config
from ladle.errors import BackendUnavailableError, ConfigError
from ladle.online.base import ReadRequest
from ladle.online.redis import cluster_read
from ladle.online.redis.cluster import ClusterNodes
from ladle.online.redis.conn import parse_connection_string
from ladle.online.redis.single import IOSettings
from ladle.online.redis.store import RedisOnlineStore

pytestmark = [pytest.mark.redis_cluster, pytest.mark.redis_tls]

SETTINGS = IOSettings(socket_timeout=2.0, connect_timeout=2.0, max_connections=4, chunk_rows=1000, ttl_ms=0)


def nodes_of(store: RedisOnlineStore) -> ClusterNodes:
    io = store._io
    assert isinstance(io, ClusterNodes)
    return io


@pytest.fixture
def project() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(redis_tls_cluster: LocalRedisCluster, project: str) -> Iterator[RedisOnlineStore]:
    s = open_store(redis_tls_cluster.connection_string)
    s.write(project, VIEW, rows(CODES))
    yield s
    s.teardown(project, [])
    s.close()


@pytest.fixture
def own_tls_cluster(redis_tls_files: TlsFiles) -> Iterator[LocalRedisCluster]:
    """A TLS 3-master cluster for this test alone (it gets killed or password-protected)."""
    cluster = tls_service(lambda: LocalRedisCluster(scratch("ladle-own-tls-cluster-"), tls=redis_tls_files).start())
    yield cluster
    cluster.stop()


def idle_links(store: RedisOnlineStore) -> list[Any]:
    return [link for links in nodes_of(store)._raw._idle for link in links.values()]


def test_reads_take_the_raw_path_on_tls_sockets(
    store: RedisOnlineStore, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pipeline per master on TLS sockets, no general-path read; after the topology is dropped the
    links reconnect (three new handshakes) with the same SSLContext."""
    codes = CODES[:300]
    raw = nodes_of(store)._raw
    assert raw.usable
    sends = TlsSends(monkeypatch)
    assert read(store, project, codes) == expected(codes)
    assert len(sends.masters) == 3 and len(set(sends.masters)) == 3 and sends.general == []
    links = idle_links(store)
    assert len(links) == 3 and all(isinstance(link, cluster_read._TlsLink) for link in links)
    assert all(isinstance(link.sock, ssl.SSLSocket) and link.sock.version() in {"TLSv1.2", "TLSv1.3"} for link in links)
    context = raw._context
    assert context is not None
    handshakes: list[str] = []
    handshake = cluster_read._handshake

    def counting(sock: Any, ctx: ssl.SSLContext, host: str, name: str) -> Any:
        assert ctx is context  # one context per endpoint, not one per link
        handshakes.append(name)
        return handshake(sock, ctx, host, name)

    monkeypatch.setattr(cluster_read, "_handshake", counting)
    nodes_of(store)._forget_topology()
    assert read(store, project, codes) == expected(codes)
    assert sorted(handshakes) == sorted(set(sends.masters)) and sends.general == []
    assert read(store, project, codes) == expected(codes)
    assert len(handshakes) == 3  # links kept across reads


def test_decrypted_bytes_held_by_tls_are_read_before_poll_sleeps(
    redis_tls_cluster: LocalRedisCluster, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a receive buffer smaller than a TLS record most of each reply sits decrypted in the SSL
    object, where ``poll`` cannot see it: the read still completes (no timeout), and no receive leaves
    bytes behind there."""
    monkeypatch.setattr(cluster_read, "_RECV", 200)  # each link's buffer, sized when it opens
    store = open_store(redis_tls_cluster.connection_string, socket_timeout_seconds=1)
    try:
        store.write(project, VIEW, rows(CODES))
        assert read(store, project, CODES[:10]) == expected(CODES[:10])  # links open
        assert {len(link.buffer) for link in idle_links(store)} == {200}
        left: list[int] = []
        receive = cluster_read._TlsLink.receive

        def checking(link: Any) -> bool:
            got = receive(link)
            left.append(link.sock.pending())
            return got

        monkeypatch.setattr(cluster_read._TlsLink, "receive", checking)
        codes = CODES[:1500]
        assert read(store, project, codes) == expected(codes)
        assert left and set(left) == {0}
    finally:
        store.teardown(project, [])
        store.close()


@pytest.mark.parametrize("paused", ["first", "last"])
def test_replies_out_of_order_across_masters(
    store: RedisOnlineStore,
    redis_tls_cluster: LocalRedisCluster,
    project: str,
    monkeypatch: pytest.MonkeyPatch,
    paused: str,
) -> None:
    """The master written first (or last) answers last: the read waits for it, every reply lands in place."""
    codes = CODES[:300]
    assert read(store, project, codes) == expected(codes)  # links open, routing known
    nodes, _ = nodes_of(store).run(cluster_read.routing)
    sends = TlsSends(monkeypatch)
    arrivals: list[str] = []
    receive = cluster_read._TlsLink.receive

    def spy_receive(link: Any) -> bool:
        got = receive(link)
        if got:
            arrivals.append(link.name)
        return got

    monkeypatch.setattr(cluster_read._TlsLink, "receive", spy_receive)
    assert read(store, project, codes) == expected(codes)
    written = list(sends.masters)
    sends.masters.clear()
    arrivals.clear()
    slow = written[0] if paused == "first" else written[-1]
    port = int(slow.rsplit(":", 1)[1])
    redis_tls_cluster.client(port).execute_command("CLIENT", "PAUSE", 300, "ALL")
    started = time.monotonic()
    assert read(store, project, codes) == expected(codes)
    assert time.monotonic() - started >= 0.25  # really waited for the paused master
    assert sends.masters == written and sends.general == []
    assert arrivals[-1] == slow and set(arrivals) == {n.name for n in nodes}


def test_a_slot_moved_during_concurrent_reads(
    store: RedisOnlineStore, redis_tls_cluster: LocalRedisCluster, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads running while a slot migrates: MOVED / ASK replies over TLS take the general path (redis-py's
    TLS connections), values stay right, and the refreshed map sends the next reads down the raw path."""
    c = redis_tls_cluster.cluster_client()
    connect = lambda host, port: redis_tls_cluster.client(port)  # noqa: E731
    moved = CODES[123]
    slot = c.keyslot(f"{{{project}:{moved}}}")
    sends = TlsSends(monkeypatch)
    sample = [moved, *CODES[:200]]
    errors, wrong, _ = reads_during(
        lambda: read(store, project, sample), expected(sample), lambda: _move_slot(c, slot, connect)
    )
    try:
        assert not errors and not wrong
        assert sends.general, "no read met the moved slot: the redirection path did not run"
        assert read(store, project, sample) == expected(sample)
        before, raw_before = len(sends.general), len(sends.masters)
        assert read(store, project, sample) == expected(sample)
        assert len(sends.general) == before and len(sends.masters) == raw_before + 3
    finally:
        monkeypatch.undo()
        back = redis_tls_cluster.cluster_client()
        _move_slot(back, slot, connect)  # give it back
        back.close()
        c.close()


def test_a_master_killed_mid_read_then_restarted(own_tls_cluster: LocalRedisCluster, project: str) -> None:
    """A master dies while a read waits on it: a clear error; restarted, the same store reads again on
    TLS links (a link held across the restart reconnects once)."""
    cluster = own_tls_cluster
    store = open_store(cluster.connection_string)
    try:
        store.write(project, VIEW, rows(CODES))
        codes = CODES[:300]
        assert read(store, project, codes) == expected(codes)
        owner = owner_port(cluster, project, codes[0])
        victim = cluster.ports.index(owner)
        cluster.client(owner).execute_command("CLIENT", "PAUSE", 5000, "ALL")
        killer = threading.Timer(0.2, cluster._procs[victim].send_signal, (signal.SIGKILL,))
        killer.start()
        with pytest.raises(BackendUnavailableError) as caught:
            read(store, project, codes)
        killer.join()
        assert "unavailable" in str(caught.value) and f"127.0.0.1:{owner}" in str(caught.value)
        restart(cluster, victim)
        lost = {c for c in codes if owner_port(cluster, project, c) == owner}  # no persistence: gone
        survivors = [None if c in lost else v for c, v in zip(codes, expected(codes), strict=True)]
        assert read(store, project, codes) == survivors
        store.write(project, VIEW, rows(CODES))
        assert read(store, project, codes) == expected(codes)
        cluster._procs[victim].send_signal(signal.SIGKILL)  # between two reads: the held link is dead
        restart(cluster, victim)
        assert read(store, project, codes) == survivors
        assert nodes_of(store)._raw.usable and all(isinstance(x, cluster_read._TlsLink) for x in idle_links(store))
    finally:
        store.close()


def owner_port(cluster: LocalRedisCluster, project: str, code: str) -> int:
    c = cluster.cluster_client()
    try:
        port: int = c.nodes_manager.get_node_from_slot(c.keyslot(f"{{{project}:{code}}}")).port
        return port
    finally:
        c.close()


def test_password_over_tls(own_tls_cluster: LocalRedisCluster, project: str) -> None:
    cluster = own_tls_cluster
    for port in cluster.ports:
        cluster.client(port).config_set("requirepass", "s3cret-pw")
    store = open_store(cluster.connection_string + ",password=s3cret-pw")
    try:
        store.write(project, VIEW, rows(CODES))
        assert read(store, project, CODES[:300]) == expected(CODES[:300])
        assert len(idle_links(store)) == 3
    finally:
        store.close()
    assert_wrong_password_refused(cluster.connection_string, project)


# -- the raw link's TLS, against single TLS servers ----------------------------------------------


def link_verdict(address: str, options: str) -> str:
    """'ok' if a raw TLS link to ``address`` with ``options`` gets PONG, else why not."""
    endpoint = parse_connection_string(f"{address},{options}")
    host, port = endpoint.nodes[0]
    try:
        link = cluster_read._TlsLink(host, port, endpoint, SETTINGS, cluster_read.tls_context(endpoint.options))
        try:
            link.send(b"*1\r\n$4\r\nPING\r\n")
            reply = link.reply()
        finally:
            link.close()
    except cluster_read.LinkLost as exc:
        return str(exc)
    return "ok" if reply == b"PONG" else repr(reply)


def redis_py_verdict(address: str, options: str) -> str:
    """'ok' if redis-py, given the same connection string, gets PONG, else why not."""
    store = RedisOnlineStore(
        load_config(
            {"project": "unused", "online_store": {"type": "redis", "connection_string": f"{address},{options}"}}
        )
    )
    try:
        reply = store._io.run(lambda conn: conn.send_packed_command([b"*1\r\n$4\r\nPING\r\n"]) or conn.read_response())  # type: ignore[union-attr]
    except BackendUnavailableError as exc:
        return str(exc)
    finally:
        store.close()
    return "ok" if reply in (b"PONG", "PONG", True) else repr(reply)


@pytest.mark.parametrize(
    ("server", "options", "ok"),
    [
        ("right", "ssl=true,ssl_ca_certs={ca}", True),
        ("right", "ssl=true", False),  # the system's CAs only
        ("right", "ssl=true,ssl_ca_certs={other_ca}", False),
        ("right", "ssl=true,ssl_cert_reqs=optional,ssl_ca_certs={other_ca}", False),
        ("right", "ssl=true,ssl_cert_reqs=none,ssl_ca_certs={other_ca}", True),
        ("right", "ssl=true,ssl_cert_reqs=none", True),
        ("misnamed", "ssl=true,ssl_ca_certs={ca}", False),
        ("misnamed", "ssl=true,ssl_ca_certs={ca},ssl_check_hostname=false", True),
        ("misnamed", "ssl=true,ssl_cert_reqs=optional,ssl_ca_certs={ca},ssl_check_hostname=false", True),
        ("misnamed", "ssl=true,ssl_cert_reqs=none", True),
        ("mtls", "ssl=true,ssl_ca_certs={ca}", False),
        ("mtls", "ssl=true,ssl_ca_certs={ca},{client}", True),
        ("mtls", "ssl=true,{client},ssl_cert_reqs=none", True),
    ],
)
def test_the_raw_link_reads_the_options_as_redis_py_does(
    request: pytest.FixtureRequest, redis_tls_files: TlsFiles, server: str, options: str, ok: bool
) -> None:
    """Each combination of ``ssl_*`` options against each server: redis-py's verdict and the raw link's agree."""
    fixture = {"right": "redis_tls_server", "misnamed": "misnamed_server", "mtls": "redis_mtls_server"}[server]
    target: TlsRedisServer = request.getfixturevalue(fixture)
    f = redis_tls_files
    client = f"ssl_certfile={f.client_cert},ssl_keyfile={f.client_key}"
    text = options.format(ca=f.ca, other_ca=f.other_ca, client=client)
    ours, theirs = link_verdict(target.address, text), redis_py_verdict(target.address, text)
    assert (ours == "ok", theirs == "ok") == (ok, ok), (ours, theirs)
    if not ok and server != "mtls":  # a verification failure says so (mTLS is refused by the server instead)
        assert "certificate verification failed" in ours and target.address in ours


def test_a_client_certificate_that_cannot_be_loaded_is_a_config_error(redis_tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match="ssl_certfile / ssl_keyfile"):
        cluster_read.tls_context({"ssl_certfile": str(redis_tls_files.ca)})  # a CA, no private key
    with pytest.raises(ConfigError, match="ssl_ca_certs / ssl_ca_path"):
        cluster_read.tls_context({"ssl_ca_certs": "/nonexistent/ca.pem"})


def test_the_handshake_is_bounded_by_the_connect_timeout(redis_tls_files: TlsFiles) -> None:
    """A server that accepts the connection and never answers the TLS hello: the link gives up after the
    connect timeout (0.3 s), not the socket timeout (60 s)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the TCP handshake; nobody ever speaks TLS
        port = silent.getsockname()[1]
        endpoint = parse_connection_string(f"127.0.0.1:{port},{redis_tls_files.options()}")
        settings = IOSettings(socket_timeout=60.0, connect_timeout=0.3, max_connections=1, chunk_rows=1, ttl_ms=0)
        started = time.monotonic()
        with pytest.raises(cluster_read.LinkLost, match=r"TLS handshake failed.*timed out"):
            cluster_read._TlsLink("127.0.0.1", port, endpoint, settings, cluster_read.tls_context(endpoint.options))
        assert time.monotonic() - started < 30


def test_a_request_to_a_missing_view_over_tls(store: RedisOnlineStore, project: str) -> None:
    """Entities never written read as absent over the raw TLS path (every master answers nil)."""
    got = store.read(project, [ReadRequest(VIEW, ["price"], {"code": [f"NONE{i}" for i in range(200)]})])[0]
    assert got.values["price"] == [None] * 200 and got.event_ts == [None] * 200
