"""The MySQL-protocol store against the real MariaDB server (``type: mysql``): plans, errors, writes, SDK.

Expected values are written by hand or computed in Python from the rows the test wrote. MariaDB
unreachable: skipped with a loud reason (a failure under ``CI=true``).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from ladle import (
    DorisSource,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    Float64,
    PushSource,
    StreamFeatureView,
    ValueType,
)
from ladle.config import load_config
from ladle.definitions.refs import ViewSelection
from ladle.errors import BackendUnavailableError, ConfigError, DataSourceError, SchemaMismatchError
from ladle.offline.base import WindowReplacer, open_offline_store
from ladle.offline.doris.config import DorisOfflineStoreConfig
from ladle.offline.doris.load import create_table
from ladle.offline.doris.store import DorisOfflineStore

MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306
pytestmark = [pytest.mark.doris, pytest.mark.mariadb]

T0 = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def mariadb_block(database: str) -> dict[str, Any]:
    return {"type": "mysql", "host": MARIADB_HOST, "port": MARIADB_PORT, "user": "root", "database": database}


def admin_connection() -> Any:
    """A root connection, or a loud skip (a failure under CI=true) when MariaDB is down."""
    import os

    import pymysql

    try:
        return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", connect_timeout=3, autocommit=True)
    except pymysql.err.OperationalError as exc:
        reason = f"MARIADB NOT AVAILABLE at {MARIADB_HOST}:{MARIADB_PORT} ({exc.args[-1]}); run scripts/services.sh"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database, dropped afterwards."""
    admin: Any = admin_connection()
    name = f"ladle_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def open_store(tmp_path: Path, database: str, **extra: Any) -> DorisOfflineStore:
    config = load_config(
        {
            "project": "doris_test",
            "registry": "registry.db",
            "online_store": {"type": "sqlite", "path": "online.db"},
            "offline_store": {**mariadb_block(database), **extra},
        },
        tmp_path,
    )
    store = open_offline_store(config)
    assert isinstance(store, DorisOfflineStore)
    return store


def ticks(n_codes: int = 20, n_times: int = 30) -> pa.Table:
    """A code x minute grid; price = code number * 1000 + minute; created = event + 1 s."""
    codes = [f"C{c:03d}" for c in range(n_codes) for _ in range(n_times)]
    minutes = [m for _ in range(n_codes) for m in range(n_times)]
    return pa.table(
        {
            "code": codes,
            "event_ts": pa.array([at(m) for m in minutes], TS),
            "created": pa.array([at(m) + timedelta(seconds=1) for m in minutes], TS),
            "price": [float(int(c[1:]) * 1000 + m) for c, m in zip(codes, minutes, strict=True)],
        }
    )


def load(store: DorisOfflineStore, database: str, name: str, rows: pa.Table) -> FileSource:
    create_table(store.config, database, name, rows.schema, ["code"], "event_ts", "created")
    source = FileSource(name=name, path="unused", timestamp_field="event_ts", created_timestamp_column="created")
    store.append(source, rows)
    return source


def view_of(source: Any, ttl: timedelta = timedelta(0), name: str = "prices") -> FeatureView:
    return FeatureView(
        name=name, source=source, entities=[commodity], schema=[Field(name="price", dtype=Float64)], ttl=ttl
    )


def entity_frame(pairs: list[tuple[str, float]]) -> pa.Table:
    return pa.table({"code": [p[0] for p in pairs], "event_timestamp": pa.array([at(p[1]) for p in pairs], TS)})


def expected_price(code: str, minute: float, ttl_minutes: float = 0, n_times: int = 30) -> float | None:
    """Brute force over the grid of :func:`ticks`."""
    visible = [m for m in range(n_times) if m <= minute and (not ttl_minutes or m >= minute - ttl_minutes)]
    return float(int(code[1:]) * 1000 + max(visible)) if visible and int(code[1:]) < 20 else None


# -- plans --------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["lookup", "window"])
def test_point_in_time_plan_and_answers(tmp_path: Path, database: str, strategy: str) -> None:
    store = open_store(tmp_path, database, pit_strategy=strategy)
    source = load(store, database, "ticks", ticks())
    view = view_of(source, ttl=timedelta(minutes=10))
    pairs = [("C001", 5.5), ("C002", 29), ("C019", 0), ("C999", 10), ("C003", 45)]
    job = store.historical(entity_frame(pairs), "event_timestamp", [ViewSelection(view, ("price",), "prices")], False)
    plan = job.explain()
    reads = [row for row in plan if row["table"] == "s"]
    if strategy == "lookup":  # mysql's default: every read of the source descends the (key, time) index
        assert len(reads) == 2 and all(row["key"] == "__ladle_pit" for row in reads), plan
    else:  # the window plan scans: the optimizer may read the index or the table (docs/offline.md)
        assert len(reads) == 2, plan
    got = job.to_arrow().column("price").to_pylist()
    assert got == [expected_price(c, m, 10) for c, m in pairs]


def test_pull_latest_plan_uses_the_source_index(tmp_path: Path, database: str) -> None:
    store = open_store(tmp_path, database)
    source = load(store, database, "ticks", ticks())
    view = view_of(source)
    import pymysql

    con = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", database=database)
    try:
        with con.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("EXPLAIN " + store.pull_sql(view, at(3), at(7)))
            plan = cur.fetchall()
    finally:
        con.close()
    reads = [row for row in plan if row["table"] == "s"]
    assert len(reads) == 2 and all(row["key"] == "__ladle_pit" for row in reads), plan
    rows = [r for b in store.pull_latest(view, at(3), at(7)) for r in b.to_pylist()]
    assert sorted((r["code"], r["price"]) for r in rows) == [(f"C{c:03d}", c * 1000 + 7.0) for c in range(20)]


def test_work_tables_are_dropped_even_when_the_query_fails(tmp_path: Path, database: str) -> None:
    store = open_store(tmp_path, database)
    source = load(store, database, "ticks", ticks(2, 2))
    view = view_of(source)
    entity = entity_frame([("C000", 1)])
    assert store.historical(entity, "event_timestamp", [ViewSelection(view, ("price",), "prices")], False).to_arrow()
    admin: Any = admin_connection()
    with admin.cursor() as cur:
        cur.execute(f"DROP TABLE `{database}`.`ticks`")  # the next run fails on the server
    with pytest.raises(DataSourceError, match="ticks"):
        store.historical(entity, "event_timestamp", [ViewSelection(view, ("price",), "prices")], False).to_arrow()
    with admin.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,))
        assert cur.fetchall() == ()
    admin.close()


# -- errors -------------------------------------------------------------------------------------


def test_wrong_password_is_a_one_line_config_error(tmp_path: Path, database: str) -> None:
    store = open_store(tmp_path, database, user="ladle_nobody", password="wrong")
    with pytest.raises(ConfigError, match="check user and password") as info:
        store.source_schema(FileSource(name="ticks", path="x", timestamp_field="event_ts"))
    assert "\n" not in str(info.value)


def test_unknown_database_and_table(tmp_path: Path, database: str) -> None:
    with pytest.raises(ConfigError, match="check database"):
        open_store(tmp_path, f"{database}_missing").source_schema(FileSource(name="t", path="x", timestamp_field="ts"))
    store = open_store(tmp_path, database)
    with pytest.raises(DataSourceError, match="doesn't exist") as info:
        store.source_schema(FileSource(name="nothing_here", path="x", timestamp_field="ts"))
    assert "\n" not in str(info.value)


def test_server_gone_is_backend_unavailable(tmp_path: Path, database: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = open_store(tmp_path, database, port=port, connect_timeout_s=2)
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}") as info:
        store.source_schema(FileSource(name="ticks", path="x", timestamp_field="event_ts"))
    assert "\n" not in str(info.value)


def test_server_gone_while_streaming_is_backend_unavailable(tmp_path: Path, database: str) -> None:
    store = open_store(tmp_path, database, fetch_batch_rows=1000)
    # 2,000,000 generated rows (MariaDB's sequence engine): far more than socket buffers hold
    many = DorisSource(
        name="many",
        query="SELECT 'A' AS code, TIMESTAMP '2024-03-10 06:00:00' + INTERVAL seq SECOND AS event_ts, "
        "seq * 1.0 AS price FROM seq_1_to_2000000",
        timestamp_field="event_ts",
    )
    batches = store.pull_all(view_of(many), at(0), at(10**6))
    assert next(batches).num_rows == 1000
    admin: Any = admin_connection()
    with admin.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
            ("%seq_1_to_2000000%",),
        )
        (victim,) = cur.fetchone()
        cur.execute(f"KILL CONNECTION {int(victim)}")
    admin.close()
    with pytest.raises(BackendUnavailableError, match="unreachable") as info:
        for _ in batches:
            pass
    assert "\n" not in str(info.value)


def test_bad_configuration_and_views(tmp_path: Path, database: str) -> None:
    with pytest.raises(ConfigError, match="no ASOF JOIN"):
        open_store(tmp_path, database, asof_join="on")
    store = open_store(tmp_path, database)
    source = load(store, database, "ticks", ticks(1, 2))
    from ladle import Aggregation, JsonFormat, KafkaSource

    kafka = KafkaSource(
        name="ticks_stream",
        kafka_bootstrap_servers="127.0.0.1:9092",
        topic="ticks",
        timestamp_field="event_ts",
        created_timestamp_column="created",
        message_format=JsonFormat("code string, event_ts timestamp, created timestamp, price double"),
        batch_source=source,
    )
    computed = StreamFeatureView(
        name="avg_price",
        source=kafka,
        entities=[commodity],
        schema=[Field(name="price_mean_5m", dtype=Float64)],
        aggregations=[Aggregation(column="price", function="mean", time_window=timedelta(minutes=5))],
        timestamp_field="event_ts",
    )
    with pytest.raises(DataSourceError, match="computes its rows"):
        list(store.pull_all(computed, at(0), at(5)))
    with pytest.raises(Exception, match="database"):
        DorisOfflineStoreConfig.model_validate({"type": "mysql"})


# -- writes -------------------------------------------------------------------------------------


def prices(store: DorisOfflineStore, view: FeatureView) -> list[tuple[str, float, datetime]]:
    rows = [r for b in store.pull_all(view, at(-1000), at(1000)) for r in b.to_pylist()]
    return sorted((r["code"], r["price"], r["event_timestamp"]) for r in rows)


def test_append_and_replace_window_are_atomic(tmp_path: Path, database: str) -> None:
    store = open_store(tmp_path, database)
    assert isinstance(store, WindowReplacer)
    source = load(store, database, "ticks", ticks(2, 4))
    view = view_of(source)
    before = prices(store, view)
    assert len(before) == 8
    # rows without the timestamp column, or with a column the table lacks: typed errors, nothing written
    with pytest.raises(SchemaMismatchError, match="event_ts"):
        store.append(source, pa.table({"code": ["C000"], "price": [1.0]}))
    with pytest.raises(SchemaMismatchError, match="volume"):
        store.append(source, pa.table({"code": ["C000"], "event_ts": pa.array([at(9)], TS), "volume": [1]}))
    # a bad value in the last row: the DELETE and the earlier rows are rolled back
    bad = pa.table(
        {
            "code": ["C000", "C000"],
            "event_ts": pa.array([at(1), at(2)], TS),
            "created": pa.array([at(1), at(2)], TS),
            "price": ["1.5", "not a number"],
        }
    )
    with pytest.raises(DataSourceError):
        store.replace_window(source, bad, at(0), at(3))
    assert prices(store, view) == before
    new = pa.table(
        {
            "code": ["C000"],
            "event_ts": pa.array([at(1)], pa.timestamp("ms", tz="America/New_York")),
            "created": pa.array([at(1)], TS),
            "price": [42.0],
        }
    )
    assert store.replace_window(source, new, at(0), at(3)) == 1
    after = prices(store, view)
    # [0, 3) replaced for every key, the row at 3 stays (end exclusive)
    assert after == sorted([("C000", 42.0, at(1)), ("C000", 3.0, at(3)), ("C001", 1003.0, at(3))])


# -- sources ------------------------------------------------------------------------------------


def test_doris_sources_by_table_and_by_query(tmp_path: Path, database: str) -> None:
    store = open_store(tmp_path, database, work_database=database)
    load(store, database, "ticks", ticks(3, 5))
    by_table = DorisSource(
        name="t", table=f"{database}.ticks", timestamp_field="event_ts", created_timestamp_column="created"
    )
    by_query = DorisSource(
        name="q",
        query=f"SELECT code, event_ts, created, price * 2 AS price FROM `{database}`.ticks WHERE code <> 'C001'",
        timestamp_field="event_ts",
        created_timestamp_column="created",
    )
    pairs = [("C000", 2), ("C001", 4), ("C002", 10)]
    entity = entity_frame(pairs)
    selections = [
        ViewSelection(view_of(by_table, name="t"), ("price",), "t"),
        ViewSelection(view_of(by_query, name="q"), ("price",), "q"),
    ]
    out = store.historical(entity, "event_timestamp", selections, True).to_arrow()
    assert out.column("t__price").to_pylist() == [2.0, 1004.0, 2004.0]
    assert out.column("q__price").to_pylist() == [4.0, None, 4008.0]
    assert store.source_schema(by_query).names == ["code", "event_ts", "created", "price"]


# -- behind a FeatureStore ----------------------------------------------------------------------


def test_feature_store_with_a_mysql_offline_store(tmp_path: Path, database: str) -> None:
    store = FeatureStore(
        config={
            "project": "doris_e2e",
            "registry": "registry.db",
            "online_store": {"type": "sqlite", "path": "online.db"},
            "offline_store": mariadb_block(database),
        },
        repo_path=tmp_path,
    )
    try:
        offline = store.offline_store
        assert isinstance(offline, DorisOfflineStore)
        source = load(offline, database, "ticks", ticks(3, 10))
        push = PushSource(name="ticks_push", batch_source=source)
        view = view_of(push)
        store.apply([commodity, source, push, view])
        frame = pd.DataFrame(
            {"code": ["C002", "C000", "C009"], "event_timestamp": pd.DatetimeIndex([at(4.5), at(100), at(3)])}
        )
        out = store.get_historical_features(entity_df=frame, features=["prices:price"]).to_df()
        assert out["price"].tolist()[:2] == [2004.0, 9.0] and pd.isna(out["price"].iloc[2])
        store.materialize(at(0), at(5))
        online = store.get_online_features(features=["prices:price"], entity_rows=[{"code": "C001"}]).to_dict()
        assert online["price"] == [1005.0]
        pushed = pd.DataFrame({"code": ["C001"], "event_ts": [at(50)], "created": [at(50)], "price": [-1.0]})
        store.push("ticks_push", pushed, to="offline")
        late = pd.DataFrame({"code": ["C001"], "event_timestamp": [at(60)]})
        again = store.get_historical_features(entity_df=late, features=["prices:price"]).to_df()
        assert again["price"].tolist() == [-1.0]
    finally:
        store.close()
