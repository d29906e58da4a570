"""Redis-specific behaviour of the Redis online store, against the real server (docs/redis.md).

The shared conformance suite checks the OnlineStore contract; these tests check what only Redis has:
the documented key layout and value header, one round trip per read, key expiry, incremental
deletion, project isolation, typed connection errors and connection-string parsing.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
import redis
from redis.crc import key_slot

from ladle.config import load_config
from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.errors import BackendUnavailableError, ConfigError
from ladle.online.base import ReadRequest
from ladle.online.redis.conn import parse_connection_string
from ladle.online.redis.store import RedisOnlineStore
from ladle.types import Float64, Int64, String

pytestmark = pytest.mark.redis

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
SOURCE = FileSource(path="ticks.parquet", timestamp_field="event_timestamp")
COMMODITY = Entity(name="commodity", join_keys=["code"], value_type=String)
VENUE = Entity(name="venue", join_keys=["venue"], value_type=String)
BIG = 30_000  # a large write: several batches, each above online.redis.upsert.FAST_PATH_ROWS


def view(name: str = "prices", features: tuple[str, ...] = ("price", "volume"), entities: Any = None) -> FeatureView:
    schema = [Field(name=f, dtype=Float64) for f in features]
    return FeatureView(name=name, source=SOURCE, entities=entities or [COMMODITY], schema=schema, ttl=timedelta(0))


def rows(codes: list[str], hour: int = 0, price: float = 1.0, **extra: list[Any]) -> pa.Table:
    n = len(codes)
    return pa.table(
        {
            "code": codes,
            "event_timestamp": pa.array([T0 + timedelta(hours=hour)] * n, TS),
            "price": [price + i for i in range(n)],
            "volume": [10.0 * i for i in range(n)],
            **extra,
        }
    )


def make_store(connection_string: str, **options: Any) -> RedisOnlineStore:
    block = {"type": "redis", "connection_string": connection_string, **options}
    return RedisOnlineStore(load_config({"project": "unused", "online_store": block}))


def expected_view_id(name: str) -> bytes:
    """The documented view id, computed independently: 12 hex digits of BLAKE2b(name)."""
    return hashlib.blake2b(name.encode(), digest_size=6).hexdigest().encode()


@pytest.fixture
def project() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(redis_address: str, project: str) -> Iterator[RedisOnlineStore]:
    s = make_store(redis_address)
    yield s
    s.teardown(project, [])
    s.close()


@pytest.fixture
def raw(redis_address: str) -> redis.Redis:
    host, port = redis_address.split(":")
    return redis.Redis(host=host, port=int(port))


class Spy:
    """Counts what a redis-py connection sends and reads (the real server still answers)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sends = 0
        self.reads = 0
        self.commands: list[tuple[Any, ...]] = []
        conn_class = redis.connection.AbstractConnection
        send, read, command = conn_class.send_packed_command, conn_class.read_response, conn_class.send_command

        def spy_send(conn: Any, *args: Any, **kwargs: Any) -> Any:
            self.sends += 1
            return send(conn, *args, **kwargs)

        def spy_read(conn: Any, *args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return read(conn, *args, **kwargs)

        def spy_command(conn: Any, *args: Any, **kwargs: Any) -> Any:
            self.commands.append(args)
            return command(conn, *args, **kwargs)

        monkeypatch.setattr(conn_class, "send_packed_command", spy_send)
        monkeypatch.setattr(conn_class, "read_response", spy_read)
        monkeypatch.setattr(conn_class, "send_command", spy_command)


# -- key layout and value header ------------------------------------------------------------


def test_keys_follow_the_documented_layout(store: RedisOnlineStore, raw: redis.Redis, project: str) -> None:
    prices, volumes = view("prices"), view("volumes")
    store.write(project, prices, rows(["CMD1", "CMD2"]))
    store.write(project, volumes, rows(["CMD1"]))
    keys = set(raw.keys(f"{{{project}:*"))
    expected = {
        b"{%s:CMD1}:%s" % (project.encode(), expected_view_id("prices")),
        b"{%s:CMD2}:%s" % (project.encode(), expected_view_id("prices")),
        b"{%s:CMD1}:%s" % (project.encode(), expected_view_id("volumes")),
        b"{%s:}:_meta" % project.encode(),
    }
    assert keys == expected
    meta = raw.hgetall(f"{{{project}:}}:_meta")
    assert meta[b"view:" + expected_view_id("prices")] == b"prices"
    # Both views of CMD1 hash to the same cluster slot (the hash tag is project + entity).
    assert key_slot(b"{%s:CMD1}:a" % project.encode()) == key_slot(b"{%s:CMD1}:b" % project.encode())


def test_value_starts_with_event_and_created_timestamps(
    store: RedisOnlineStore, raw: redis.Redis, project: str
) -> None:
    table = rows(["CMD1"], hour=3).append_column("created_timestamp", pa.array([T0 + timedelta(hours=5)], TS))
    store.write(project, view(), table)
    blob = raw.get(b"{%s:CMD1}:%s" % (project.encode(), expected_view_id("prices")))
    assert blob is not None
    event_us, created_us = struct.unpack_from("<qq", blob)
    assert event_us == int((T0 + timedelta(hours=3)).timestamp() * 1_000_000)
    assert created_us == int((T0 + timedelta(hours=5)).timestamp() * 1_000_000)
    # 8 + 8 + 4 (layout fingerprint) + 1 (null bitmap) + 2 float64 features
    assert len(blob) == 8 + 8 + 4 + 1 + 2 * 8
    assert struct.unpack_from("<dd", blob, 21) == (1.0, 0.0)


def test_composite_and_integer_keys(store: RedisOnlineStore, raw: redis.Redis, project: str) -> None:
    station = Entity(name="station", join_keys=["station_id"], value_type=Int64)
    both = FeatureView(
        name="by_pair", source=SOURCE, entities=[VENUE, station], schema=[Field(name="price", dtype=Float64)]
    )
    table = pa.table({"venue": ["ICE"], "station_id": [42], "event_timestamp": pa.array([T0], TS), "price": [2.5]})
    store.write(project, both, table)
    # join keys sorted by name (station_id < venue), each written as <byte length>:<bytes>
    key = b"{%s:2:423:ICE}:%s" % (project.encode(), expected_view_id("by_pair"))
    assert raw.exists(key)
    out = store.read(project, [ReadRequest(both, ["price"], {"venue": ["ICE", "NYM"], "station_id": [42, 42]})])
    assert out[0].values["price"] == [2.5, None]


# -- reads -------------------------------------------------------------------------------------


def test_read_of_many_views_and_entities_is_one_round_trip(
    store: RedisOnlineStore, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = [view(f"v{i}") for i in range(3)]
    codes = [f"CMD{i}" for i in range(50)]
    for v in views:
        store.write(project, v, rows(codes))
    requests = [ReadRequest(v, ["price", "volume"], {"code": [*codes, "absent"]}) for v in views]
    store.read(project, requests)  # warm: connection open, plans cached
    spy = Spy(monkeypatch)
    out = store.read(project, requests)
    assert (spy.sends, spy.reads) == (1, 1)
    assert all(r.values["price"][:50] == [1.0 + i for i in range(50)] for r in out)
    assert all(r.event_ts[50] is None and r.values["volume"][50] is None for r in out)


# -- expiry ----------------------------------------------------------------------------------


def test_key_ttl_seconds_expires_rows(redis_address: str, raw: redis.Redis, project: str) -> None:
    store = make_store(redis_address, key_ttl_seconds=2)
    try:
        store.write(project, view(), rows(["CMD1"]))
        key = b"{%s:CMD1}:%s" % (project.encode(), expected_view_id("prices"))
        assert 0 < raw.pttl(key) <= 2000
        # An older write is dropped and leaves the expiry alone; a newer one sets it again.
        time.sleep(0.8)
        assert store.write(project, view(), rows(["CMD1"], hour=-1)) == 0
        assert raw.pttl(key) <= 1200
        assert store.write(project, view(), rows(["CMD1"], hour=1)) == 1
        assert raw.pttl(key) > 1200
        time.sleep(2.1)
        out = store.read(project, [ReadRequest(view(), ["price"], {"code": ["CMD1"]})])
        assert out[0].event_ts == [None]
    finally:
        store.teardown(project, [])
        store.close()


def test_rows_do_not_expire_without_key_ttl(store: RedisOnlineStore, raw: redis.Redis, project: str) -> None:
    store.write(project, view(), rows(["CMD1"]))
    assert raw.pttl(b"{%s:CMD1}:%s" % (project.encode(), expected_view_id("prices"))) == -1


# -- deletion ----------------------------------------------------------------------------------


def test_delete_view_scans_incrementally_and_keeps_other_views(
    redis_address: str, raw: redis.Redis, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(redis_address, delete_scan_count=100)
    try:
        prices, volumes = view("prices"), view("volumes")
        codes = [f"CMD{i}" for i in range(2_000)]
        store.write(project, prices, rows(codes))
        store.write(project, volumes, rows(codes[:10]))
        spy = Spy(monkeypatch)
        store.delete_view(project, prices)
        names = [c[0] for c in spy.commands]
        assert "KEYS" not in names and "FLUSHDB" not in names and "FLUSHALL" not in names
        scans = [c for c in spy.commands if c[0] == "SCAN"]
        assert len(scans) > 1  # incremental: many bounded steps, never one call over the keyspace
        assert all("MATCH" in c and "COUNT" in c for c in scans)
        assert raw.keys(b"{%s:*}:%s" % (project.encode(), expected_view_id("prices"))) == []
        assert len(raw.keys(b"{%s:*}:%s" % (project.encode(), expected_view_id("volumes")))) == 10
        out = store.read(project, [ReadRequest(volumes, ["price"], {"code": ["CMD1"]})])
        assert out[0].values["price"] == [2.0]
    finally:
        store.teardown(project, [])
        store.close()


def test_teardown_removes_only_that_projects_keys(store: RedisOnlineStore, raw: redis.Redis, project: str) -> None:
    neighbours = [project + "2", project + "_x"]  # names that start with the torn-down project's name
    for p in [project, *neighbours]:
        store.write(p, view(), rows(["CMD1", "CMD2"]))
    raw.set(f"unrelated:{project}", b"keep me")
    try:
        store.teardown(project, [view()])
        assert raw.keys(f"{{{project}:*") == []
        for p in neighbours:
            assert len(raw.keys(f"{{{p}:*")) == 3  # two rows + _meta
            out = store.read(p, [ReadRequest(view(), ["price"], {"code": ["CMD2"]})])
            assert out[0].values["price"] == [2.0]
        assert raw.get(f"unrelated:{project}") == b"keep me"
    finally:
        for p in neighbours:
            store.teardown(p, [])
        raw.delete(f"unrelated:{project}")


def test_update_deletes_removed_views(store: RedisOnlineStore, raw: redis.Redis, project: str) -> None:
    prices, volumes = view("prices"), view("volumes")
    store.write(project, prices, rows(["CMD1"]))
    store.write(project, volumes, rows(["CMD1"]))
    store.update(project, keep=[volumes], delete=[prices])
    assert raw.keys(b"{%s:*}:%s" % (project.encode(), expected_view_id("prices"))) == []
    assert raw.exists(b"{%s:CMD1}:%s" % (project.encode(), expected_view_id("volumes")))


# -- schema changes ------------------------------------------------------------------------------


def test_rows_written_before_a_schema_change_still_read(store: RedisOnlineStore, project: str) -> None:
    store.write(project, view(features=("price", "volume")), rows(["CMD1"]))
    changed = FeatureView(
        name="prices",
        source=SOURCE,
        entities=[COMMODITY],
        schema=[Field(name="volume", dtype=Float64), Field(name="price", dtype=String), Field(name="n", dtype=Int64)],
    )
    out = store.read(project, [ReadRequest(changed, ["volume", "price", "n"], {"code": ["CMD1"]})])
    # volume kept its dtype and is read; price changed dtype and n is new: both read as null
    assert out[0].values == {"volume": [0.0], "price": [None], "n": [None]}
    assert out[0].event_ts == [int(T0.timestamp() * 1_000_000)]


# -- concurrency -------------------------------------------------------------------------------


def test_concurrent_writers_never_replace_newer_rows(redis_address: str, project: str) -> None:
    codes = [f"CMD{i}" for i in range(500)]
    stores = [make_store(redis_address) for _ in range(2)]
    errors: list[BaseException] = []

    def writer(store: RedisOnlineStore, hours: range) -> None:
        try:
            for hour in hours:
                store.write(project, view(), rows(codes, hour=hour, price=float(hour)))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(stores[0], range(0, 40, 2))),
        threading.Thread(target=writer, args=(stores[1], range(39, 0, -2))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        out = stores[0].read(project, [ReadRequest(view(), ["price"], {"code": codes})])
        assert out[0].event_ts == [int((T0 + timedelta(hours=39)).timestamp() * 1_000_000)] * 500
        assert out[0].values["price"] == [39.0 + i for i in range(500)]
    finally:
        stores[0].teardown(project, [])
        for s in stores:
            s.close()


def test_duplicate_entities_in_one_write_keep_the_newest(store: RedisOnlineStore, project: str) -> None:
    table = pa.table(
        {
            "code": ["CMD1", "CMD1", "CMD1", "CMD2", "CMD2"],
            "event_timestamp": pa.array([T0 + timedelta(hours=h) for h in (1, 3, 2, 5, 5)], TS),
            "created_timestamp": pa.array([T0, T0, T0, T0 + timedelta(seconds=2), T0 + timedelta(seconds=1)], TS),
            "price": [1.0, 3.0, 2.0, 52.0, 51.0],
        }
    )
    store.write(project, view(), table)
    out = store.read(project, [ReadRequest(view(), ["price"], {"code": ["CMD1", "CMD2"]})])
    assert out[0].values["price"] == [3.0, 52.0]


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [10, BIG])
def test_a_server_that_forgot_the_script_gets_it_again(
    store: RedisOnlineStore, raw: redis.Redis, project: str, size: int
) -> None:
    codes = [f"CMD{i:06d}" for i in range(size)]
    store.write(project, view(), rows(codes))  # the script is loaded now
    raw.script_flush()  # what a restart or failover does
    assert store.write(project, view(), rows(codes, hour=1)) == size  # NOSCRIPT → SCRIPT LOAD → retry
    got = store.read(project, [ReadRequest(view(), ["price"], {"code": codes[-1:]})])[0]
    assert got.event_ts == [int((T0 + timedelta(hours=1)).timestamp() * 1_000_000)]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_a_typed_error_naming_the_address(project: str) -> None:
    port = _closed_port()
    store = make_store(f"127.0.0.1:{port}", connect_timeout_seconds=0.5)
    for call in (
        store.ping,
        lambda: store.read(project, [ReadRequest(view(), ["price"], {"code": ["CMD1"]})]),
        lambda: store.write(project, view(), rows(["CMD1"])),
        lambda: store.teardown(project, []),
    ):
        with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
            call()


def test_timeout_is_a_typed_error(project: str) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = make_store(f"127.0.0.1:{port}", socket_timeout_seconds=0.2)
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}.*timed out"):
            store.read(project, [ReadRequest(view(), ["price"], {"code": ["CMD1"]})])
        assert time.monotonic() - started < 2


def test_wrong_credentials_are_unavailable_without_echoing_them(redis_address: str) -> None:
    store = make_store(f"{redis_address},username=nobody,password=not-the-password-123")
    with pytest.raises(BackendUnavailableError) as info:
        store.ping()
    assert redis_address in str(info.value)
    assert "not-the-password-123" not in str(info.value)


def test_unreachable_cluster_is_a_typed_error_naming_the_nodes() -> None:
    ports = [_closed_port(), _closed_port()]
    nodes = ",".join(f"127.0.0.1:{p}" for p in ports)
    store = make_store(nodes, redis_type="redis_cluster", connect_timeout_seconds=0.5)
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"):
        store.ping()


def test_db_option_selects_the_database(redis_address: str, project: str) -> None:
    host, port = redis_address.split(":")
    store = make_store(f"{redis_address},db=5")
    try:
        store.write(project, view(), rows(["CMD1"]))
        key = b"{%s:CMD1}:%s" % (project.encode(), expected_view_id("prices"))
        assert redis.Redis(host=host, port=int(port), db=5).exists(key)
        assert not redis.Redis(host=host, port=int(port), db=0).exists(key)
    finally:
        store.teardown(project, [])
        store.close()


# -- connection strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nodes", "options"),
    [
        ("localhost:6379", [("localhost", 6379)], {}),
        ("redis-1", [("redis-1", 6379)], {}),
        ("r1:7000, r2:7001 ,db=2,password=s3:cr=t", [("r1", 7000), ("r2", 7001)], {"db": 2, "password": "s3:cr=t"}),
        ("r1:7000,ssl=true,ssl_cert_reqs=none", [("r1", 7000)], {"ssl": True, "ssl_cert_reqs": "none"}),
        ("[::1]:6380,username=app", [("::1", 6380)], {"username": "app"}),
        ("redis://u:p%40ss@cache:6390/3", [("cache", 6390)], {"username": "u", "password": "p@ss", "db": 3}),
        ("rediss://cache", [("cache", 6379)], {"ssl": True}),
        ("redis://cache:6379?ssl_cert_reqs=optional", [("cache", 6379)], {"ssl_cert_reqs": "optional"}),
    ],
)
def test_connection_strings_parse(text: str, nodes: list[tuple[str, int]], options: dict[str, Any]) -> None:
    endpoint = parse_connection_string(text)
    assert list(endpoint.nodes) == nodes
    assert dict(endpoint.options) == options


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("localhost:port", "not a number"),
        ("localhost:70000", "not a number"),
        ("localhost:6379,,db=1", "empty item"),
        ("localhost:6379,db=one", "must be an integer"),
        ("localhost:6379,ssl=maybe", "true or false"),
        ("localhost:6379,colour=blue", "unknown option 'colour'"),
        ("localhost:6379,db=1,db=2", "given twice"),
        ("db=1", "no host:port"),
        ("db=1,localhost:6379", "after options"),
        ("localhost:6379,db=1,other:6379", "after options"),
        ("http://localhost:6379", "scheme 'http://'"),
        ("::1:6379", "IPv6"),
        ("redis://localhost:6379,redis://other:6379", "one node"),
        ("localhost:6379,ssl=true,ssl_keyfile=/k.pem", "'ssl_keyfile' needs 'ssl_certfile'"),
        ("rediss://localhost:6379?ssl_keyfile=/k.pem", "'ssl_keyfile' needs 'ssl_certfile'"),
    ],
)
def test_bad_connection_strings_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_store(text)


def test_config_errors_never_echo_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        make_store("localhost:6379,password=hunter2,colour=blue")
    assert "hunter2" not in str(info.value)


def test_several_nodes_need_redis_cluster() -> None:
    with pytest.raises(ConfigError, match="redis_cluster"):
        make_store("r1:6379,r2:6379")
    with pytest.raises(ConfigError, match="db=3"):
        make_store("r1:6379,r2:6379,db=3", redis_type="redis_cluster")


def test_ssl_selects_a_tls_connection() -> None:
    store = make_store("cache:6380,ssl=true,ssl_cert_reqs=none")
    assert store._io._connection_class is redis.connection.SSLConnection  # type: ignore[union-attr]
    plain = make_store("cache:6380")
    assert plain._io._connection_class is redis.connection.Connection  # type: ignore[union-attr]


# -- the MSETNX fast path of large writes ------------------------------------------------------


def big_rows(hour: int, codes: list[str]) -> pa.Table:
    return rows(codes, hour=hour, price=float(hour * 1_000_000))


def test_large_write_keeps_newer_rows_that_already_exist(
    store: RedisOnlineStore, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = [f"CMD{i:06d}" for i in range(BIG)]
    scattered = codes[5_000::3_000]  # existing keys spread over many chunks, none in the first
    store.write(project, view(), big_rows(10, scattered)[: len(scattered)])
    spy = Spy(monkeypatch)
    written = store.write(project, view(), big_rows(1, codes))
    assert written == BIG - len(scattered)
    assert spy.sends > BIG // 2000  # chunks went out as MSETNX, refused ones again as scripts
    out = store.read(project, [ReadRequest(view(), ["price"], {"code": codes})])[0]
    newer = set(scattered)
    stamp = {c: 10 if c in newer else 1 for c in codes}
    assert out.event_ts == [int((T0 + timedelta(hours=stamp[c])).timestamp() * 1_000_000) for c in codes]
    assert out.values["price"] == [
        (10_000_000.0 + scattered.index(c)) if c in newer else 1_000_000.0 + i for i, c in enumerate(codes)
    ]


def test_large_write_over_existing_rows_compares_every_row(store: RedisOnlineStore, project: str) -> None:
    codes = [f"CMD{i:06d}" for i in range(BIG)]
    store.write(project, view(), big_rows(5, codes))
    older, newer = big_rows(4, codes), big_rows(6, codes)
    assert store.write(project, view(), older) == 0  # the MSETNX probe is refused: all compared
    assert store.write(project, view(), newer) == BIG
    out = store.read(project, [ReadRequest(view(), ["price"], {"code": codes[::997]})])[0]
    assert out.values["price"] == [6_000_000.0 + i for i in range(0, BIG, 997)]


def test_large_write_with_repeated_entities_keeps_the_newest(store: RedisOnlineStore, project: str) -> None:
    codes = [f"CMD{i:06d}" for i in range(BIG // 2)]
    table = pa.concat_tables([big_rows(3, codes), big_rows(2, codes)])  # the newer copy comes first
    store.write(project, view(), table)
    out = store.read(project, [ReadRequest(view(), ["price"], {"code": codes[::101]})])[0]
    assert out.values["price"] == [3_000_000.0 + i for i in range(0, BIG // 2, 101)]


def test_large_write_with_key_ttl_sets_expiry(redis_address: str, raw: redis.Redis, project: str) -> None:
    store = make_store(redis_address, key_ttl_seconds=100)
    try:
        codes = [f"CMD{i:06d}" for i in range(BIG)]
        assert store.write(project, view(), big_rows(1, codes)) == BIG
        for code in (codes[0], codes[-1]):
            assert raw.pttl(b"{%s:%s}:%s" % (project.encode(), code.encode(), expected_view_id("prices"))) > 0
    finally:
        store.teardown(project, [])
        store.close()


def test_huge_read_is_still_one_round_trip(
    store: RedisOnlineStore, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = [f"C{i}" for i in range(6_000)]  # keys of varying length, more than one MGET's worth
    store.write(project, view(), rows(codes))
    spy = Spy(monkeypatch)
    got = store.read(project, [ReadRequest(view(), ["price"], {"code": codes[::-1]})])[0]
    assert spy.sends == 1
    assert got.values["price"] == [1.0 + i for i in range(6_000)][::-1]


def test_a_forked_child_uses_its_own_connections(store: RedisOnlineStore, project: str) -> None:
    import multiprocessing

    store.write(project, view(), rows(["CMD1", "CMD2"]))  # the parent now holds a pooled connection

    def child(queue: Any) -> None:
        seen = {
            tuple(store.read(project, [ReadRequest(view(), ["price"], {"code": ["CMD2"]})])[0].values["price"])
            for _ in range(300)
        }
        queue.put(sorted(seen))

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(queue,))
    proc.start()
    # Both processes talk at once: on a shared socket their replies would cross.
    seen = {
        tuple(store.read(project, [ReadRequest(view(), ["price"], {"code": ["CMD1"]})])[0].values["price"])
        for _ in range(300)
    }
    proc.join(30)
    assert proc.exitcode == 0
    assert queue.get(timeout=5) == [(2.0,)]
    assert seen == {(1.0,)}


@pytest.mark.timeout(60)
def test_write_batches_replays_unanswered_batches_after_a_dropped_connection(
    redis_address: str, raw: redis.Redis, project: str
) -> None:
    name = f"ladle-{project}"
    store = make_store(f"{redis_address},client_name={name}", write_batch_rows=1000)
    killed = []

    def batches() -> Iterator[pa.Table]:
        for i in range(6):
            if i == 3:  # drop the store's connection in the middle of the stream
                ids = [c["id"] for c in raw.client_list() if c["name"] == name]
                killed.extend(raw.client_kill_filter(_id=i) for i in ids)
            yield rows([f"B{i}_{j}" for j in range(2500)], hour=i)

    try:
        assert store.write_batches(project, view(), batches()) == 6 * 2500
        assert killed == [1]
        codes = [f"B{i}_{j}" for i in range(6) for j in range(2500)]
        got = store.read(project, [ReadRequest(view(), ["price"], {"code": codes})])[0]
        assert got.values["price"] == [1.0 + j for _ in range(6) for j in range(2500)]
    finally:
        store.teardown(project, [])
        store.close()


def test_without_the_driver_the_error_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import ladle\n"  # the core imports without redis
        "from ladle.errors import MissingExtraError\n"
        "from ladle.config import load_config\n"
        "try:\n"
        "    load_config({'project': 'p', 'online_store': {'type': 'redis'}})\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'ladle[redis]'" in out


@pytest.mark.parametrize(("total", "batch"), [(0, 10), (1, 10), (10, 10), (11, 10), (50_000, 16_384), (49_999, 7)])
def test_even_batches_cover_the_rows_in_the_fewest_equal_batches(total: int, batch: int) -> None:
    from ladle.online.redis.write import even_batches

    spans = even_batches(total, batch)
    assert [s for s, _ in spans] == [0, *[e for _, e in spans[:-1]]][: len(spans)]  # contiguous, from 0
    assert (spans[-1][1] if spans else 0) == total
    sizes = [e - s for s, e in spans]
    assert len(spans) == -(-total // batch)
    assert all(0 < n <= batch for n in sizes) and max(sizes, default=0) - min(sizes, default=0) <= 1


def test_a_stream_of_parts_leaves_no_small_tail_to_the_script(
    store: RedisOnlineStore, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20,000-row parts in 16,384-row batches: sliced greedily, each part's 3,616-row tail would be under
    FAST_PATH_ROWS and go through the upsert script; equal batches keep every row on MSETNX."""
    from ladle.online.redis import upsert

    scripts = []
    real = upsert.Upsert._script

    def counted(self: upsert.Upsert, sent: Any, start: int, stop: int, *, unique: bool) -> None:
        scripts.append(stop - start)
        real(self, sent, start, stop, unique=unique)

    monkeypatch.setattr(upsert.Upsert, "_script", counted)
    parts = [rows([f"P{i}_{j:05d}" for j in range(20_000)], hour=i, price=float(i)) for i in range(3)]
    assert store.write_batches(project, view(), iter(parts)) == 60_000
    assert scripts == []
    codes = [f"P{i}_{j:05d}" for i in range(3) for j in range(0, 20_000, 997)]
    got = store.read(project, [ReadRequest(view(), ["price"], {"code": codes})])[0]
    assert got.values["price"] == [float(i) + j for i in range(3) for j in range(0, 20_000, 997)]
