"""The Redis online store over TLS, on real TLS-only servers: one redis-server and a 3-master cluster.

The same store tests run on both (writes, reads of several views with missing keys, newest event
wins, key expiry), then certificate verification: the right CA, a wrong one, no verification, host
name checks, and client certificates (``tls-auth-clients yes``). The servers come from
tests/backends/conftest.py (a throwaway CA per session, servers on free loopback ports).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from backends.conftest import scratch, tls_service
from backends.redis_cluster import LocalRedisCluster
from backends.redis_tls import TlsFiles, TlsRedisServer, TlsSends
from ladle.config import load_config
from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.errors import BackendUnavailableError, ConfigError
from ladle.online.base import ReadRequest
from ladle.online.redis.store import RedisOnlineStore
from ladle.types import Float64, String

pytestmark = pytest.mark.redis_tls

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SOURCE = FileSource(path="ticks.parquet", timestamp_field="event_timestamp")
COMMODITY = Entity(name="commodity", join_keys=["code"], value_type=String)
CODES = [f"CMD{i:05d}" for i in range(2_000)]


def view(name: str) -> FeatureView:
    schema = [Field(name="price", dtype=Float64), Field(name="volume", dtype=Float64)]
    return FeatureView(name=name, source=SOURCE, entities=[COMMODITY], schema=schema, ttl=timedelta(0))


VIEWS = [view("prices"), view("volumes"), view("weather")]


def rows(codes: list[str], hour: int = 1, base: float = 0.0) -> pa.Table:
    return pa.table(
        {
            "code": codes,
            "event_timestamp": pa.array([T0 + timedelta(hours=hour)] * len(codes), pa.timestamp("us", tz="UTC")),
            "price": [base + i for i in range(len(codes))],
            "volume": [10.0 * i for i in range(len(codes))],
        }
    )


@dataclass
class Target:
    """A TLS deployment under test: its kind, connection string, and a way to reach it with redis-py."""

    kind: str  # "redis" or "redis_cluster"
    nodes: str  # host:port[,host:port...] without options
    files: TlsFiles
    cluster: LocalRedisCluster | None = None
    server: TlsRedisServer | None = None

    def store(self, options: str | None = None, **extra: Any) -> RedisOnlineStore:
        """A store on these nodes with ``options`` (default: verified TLS with the right CA)."""
        text = f"{self.nodes},{self.files.options() if options is None else options}"
        block = {"type": "redis", "connection_string": text, "redis_type": self.kind, **extra}
        return RedisOnlineStore(load_config({"project": "unused", "online_store": block}))

    def exists(self, key: bytes) -> bool:
        """Whether ``key`` is on the server, asked over TLS by redis-py (not through the store)."""
        client: Any = self.cluster.cluster_client() if self.cluster else self.server.client()  # type: ignore[union-attr]
        try:
            return bool(client.exists(key))
        finally:
            client.close()


@pytest.fixture(params=["single", "cluster"])
def target(request: pytest.FixtureRequest, redis_tls_files: TlsFiles) -> Target:
    if request.param == "single":
        server: TlsRedisServer = request.getfixturevalue("redis_tls_server")
        return Target("redis", server.address, redis_tls_files, server=server)
    cluster: LocalRedisCluster = request.getfixturevalue("redis_tls_cluster")
    return Target("redis_cluster", cluster.nodes, redis_tls_files, cluster=cluster)


@pytest.fixture
def project() -> str:
    return f"s{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(target: Target, project: str) -> Iterator[RedisOnlineStore]:
    s = target.store()
    yield s
    s.teardown(project, [])
    s.close()


def test_writes_and_reads_of_many_entities_and_views(
    store: RedisOnlineStore, target: Target, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 entities in three views written and read back over TLS, missing keys included; a
    cluster's reads take the raw TLS path (one pipeline per master, no general-path read)."""
    for n, v in enumerate(VIEWS):
        assert store.write(project, v, rows(CODES, base=1000.0 * n)) == len(CODES)
    assert target.exists(b"{%s:%s}:%s" % (project.encode(), CODES[7].encode(), _vid("prices")))  # on the server
    asked = [*CODES[::3], "absent-1", *CODES[1::7], "absent-2"]
    spy = TlsSends(monkeypatch)
    out = store.read(project, [ReadRequest(v, ["price", "volume"], {"code": asked}) for v in VIEWS])
    stamp = int((T0 + timedelta(hours=1)).timestamp() * 1_000_000)
    for n, got in enumerate(out):
        want = [None if c.startswith("absent") else 1000.0 * n + CODES.index(c) for c in asked]
        assert got.values["price"] == want
        volumes = [None if w is None else 10.0 * CODES.index(c) for c, w in zip(asked, want, strict=True)]
        assert got.values["volume"] == volumes
        assert got.event_ts == [None if w is None else stamp for w in want]
    if target.kind == "redis_cluster":
        assert len(spy.masters) == 3 and len(set(spy.masters)) == 3  # one pipeline per master
        assert spy.general == []


def test_newest_event_wins_over_tls(store: RedisOnlineStore, project: str) -> None:
    codes = CODES[:500]
    assert store.write(project, VIEWS[0], rows(codes, hour=5, base=5000.0)) == 500
    assert store.write(project, VIEWS[0], rows(codes, hour=4, base=4000.0)) == 0  # older: dropped
    assert store.write(project, VIEWS[0], rows(codes[::2], hour=6, base=6000.0)) == 250
    got = store.read(project, [ReadRequest(VIEWS[0], ["price"], {"code": codes})])[0]
    assert got.values["price"] == [6000.0 + i // 2 if i % 2 == 0 else 5000.0 + i for i in range(500)]


def test_key_ttl_expires_rows_over_tls(target: Target, project: str) -> None:
    store = target.store(key_ttl_seconds=1)
    try:
        codes = CODES[:200]
        assert store.write(project, VIEWS[0], rows(codes)) == 200
        request = [ReadRequest(VIEWS[0], ["price"], {"code": codes})]
        assert store.read(project, request)[0].values["price"] == [float(i) for i in range(200)]
        time.sleep(1.3)
        assert store.read(project, request)[0].event_ts == [None] * 200
    finally:
        store.teardown(project, [])
        store.close()


# -- certificate verification -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "ok"),
    [
        ("ssl=true,ssl_cert_reqs=required,ssl_ca_certs={ca}", True),
        ("ssl=true,ssl_cert_reqs=required,ssl_ca_certs={other_ca}", False),
        ("ssl=true,ssl_cert_reqs=optional,ssl_ca_certs={other_ca}", False),
        ("ssl=true,ssl_ca_certs={other_ca}", False),  # required is the default
        ("ssl=true", False),  # the system's CAs only: this CA is not among them
        ("ssl=true,ssl_cert_reqs=none,ssl_ca_certs={other_ca}", True),  # nothing verified
        ("ssl=true,ssl_cert_reqs=none", True),
    ],
)
def test_certificate_verification(target: Target, project: str, options: str, ok: bool) -> None:
    """The right CA verifies; a wrong one (or none) is a typed error saying why, naming the address."""
    files = target.files
    store = target.store(options.format(ca=files.ca, other_ca=files.other_ca))
    try:
        if ok:
            assert store.write(project, VIEWS[0], rows(CODES[:100])) == 100
            got = store.read(project, [ReadRequest(VIEWS[0], ["price"], {"code": CODES[:100]})])[0]
            assert got.values["price"] == [float(i) for i in range(100)]
            store.teardown(project, [])
            return
        with pytest.raises(BackendUnavailableError) as caught:
            store.read(project, [ReadRequest(VIEWS[0], ["price"], {"code": CODES[:100]})])
        message = str(caught.value)
        assert "certificate verify failed" in message, message
        assert "check ssl_ca_certs" in message, message  # the hint says which options to look at
        assert target.nodes.split(",")[0] in message
    finally:
        store.close()


@pytest.mark.parametrize("option", ["ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path"])
def test_a_missing_tls_file_is_named_when_the_store_opens(target: Target, option: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "cert.pem"
    pair = f",ssl_certfile={target.files.client_cert}" if option == "ssl_keyfile" else ""  # a key needs its cert
    with pytest.raises(ConfigError, match=rf"option '{option}': no such (file|directory): {re.escape(str(missing))}"):
        target.store(f"ssl=true,{option}={missing}{pair}")


def test_a_client_key_without_its_certificate_is_refused_before_any_connection(target: Target) -> None:
    """redis-py would raise a bare ``TypeError`` on first connect; the store names the missing option."""
    with pytest.raises(ConfigError, match="'ssl_keyfile' needs 'ssl_certfile'"):
        target.store(f"{target.files.options()},ssl_keyfile={target.files.client_key}")


def test_plain_client_against_a_tls_server_is_a_typed_error(target: Target, project: str) -> None:
    store = target.store("client_name=plain")  # no ssl=true: the server speaks TLS only
    try:
        with pytest.raises(BackendUnavailableError, match=r"unavailable.*(reset by peer|closed)"):
            store.read(project, [ReadRequest(VIEWS[0], ["price"], {"code": CODES[:10]})])
    finally:
        store.close()


def test_host_name_check(misnamed_server: TlsRedisServer, redis_tls_files: TlsFiles, project: str) -> None:
    """A certificate for another host fails the host name check unless ``ssl_check_hostname=false``."""
    target = Target("redis", misnamed_server.address, redis_tls_files, server=misnamed_server)
    checked = target.store()
    try:
        with pytest.raises(BackendUnavailableError, match=r"certificate verify failed.*(IP address|hostname) mismatch"):
            checked.read(project, [ReadRequest(VIEWS[0], ["price"], {"code": CODES[:10]})])
    finally:
        checked.close()
    unchecked = target.store(f"{redis_tls_files.options()},ssl_check_hostname=false")
    try:
        assert unchecked.write(project, VIEWS[0], rows(CODES[:10])) == 10
        got = unchecked.read(project, [ReadRequest(VIEWS[0], ["price"], {"code": CODES[:10]})])[0]
        assert got.values["price"] == [float(i) for i in range(10)]
        unchecked.teardown(project, [])
    finally:
        unchecked.close()


# -- client certificates (tls-auth-clients yes) -----------------------------------------------


@pytest.fixture(scope="module", params=["single", "cluster"])
def client_cert_target(request: pytest.FixtureRequest, redis_tls_files: TlsFiles) -> Iterator[Target]:
    """A server (or a cluster of its own) that requires a client certificate from the test CA."""
    if request.param == "single":
        server: TlsRedisServer = request.getfixturevalue("redis_mtls_server")
        yield Target("redis", server.address, redis_tls_files, server=server)
        return
    cluster = tls_service(
        lambda: LocalRedisCluster(scratch("ladle-redis-mtls-cluster-"), tls=redis_tls_files, auth_clients=True).start()
    )
    yield Target("redis_cluster", cluster.nodes, redis_tls_files, cluster=cluster)
    cluster.stop()


def test_client_certificates(client_cert_target: Target, project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``ssl_certfile`` / ``ssl_keyfile`` the server lets the store in (a cluster's raw reads too);
    without them it is a typed error."""
    target, files = client_cert_target, client_cert_target.files
    store = target.store(files.options(client_cert=True))
    try:
        assert store.write(project, VIEWS[0], rows(CODES[:300])) == 300
        spy = TlsSends(monkeypatch)
        got = store.read(project, [ReadRequest(VIEWS[0], ["price"], {"code": CODES[:300]})])[0]
        assert got.values["price"] == [float(i) for i in range(300)]
        if target.kind == "redis_cluster":
            assert len(spy.masters) == 3 and spy.general == []
        store.teardown(project, [])
    finally:
        store.close()
    anonymous = target.store(files.options())
    try:
        with pytest.raises(BackendUnavailableError, match="unavailable"):
            anonymous.read(project, [ReadRequest(VIEWS[0], ["price"], {"code": CODES[:10]})])
    finally:
        anonymous.close()


def _vid(name: str) -> bytes:
    """The documented view id: 12 hex digits of BLAKE2b(name)."""
    return hashlib.blake2b(name.encode(), digest_size=6).hexdigest().encode()
