"""The MySQL-protocol store's SQL: every statement rendered for Doris, StarRocks and MySQL, and parsed back.

No server here: what runs on MariaDB is tested in test_doris_mariadb.py and the conformance suite.
Doris and StarRocks renderings are checked for syntax only (sqlglot parses them back), since no
such server is on this machine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlglot
from sqlglot import exp

from ladle.errors import DataSourceError
from ladle.offline.doris import sql
from ladle.offline.doris.config import Dialect, DorisOfflineStoreConfig, SourceRelation, source_relation
from ladle.offline.doris.connection import has_asof_join, parse_version

DIALECTS: list[Dialect] = ["doris", "starrocks", "mysql"]
T0 = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)
US = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)

TABLE = sql.Source(SourceRelation("ticks", "features", "ticks"), {"code": "c"}, "event_ts", "created")
QUERY = sql.Source(
    SourceRelation("recent", query="SELECT c, event_ts, created, price FROM features.ticks WHERE price > 0"),
    {"code": "c"},
    "event_ts",
    "",
)


def joins(source: sql.Source, ttl: bool = True) -> list[sql.ViewJoin]:
    one = sql.ViewJoin(source, ("code",), (0,), ("price",), ttl, (US - 3_600_000_000, US))
    two = sql.ViewJoin(TABLE, ("code", "market_id"), (0, 1), ("price", "volume"), False, (sql.MIN_US, US))
    return [one, two]


def statements(dialect: Dialect) -> dict[str, str]:
    """Every statement kind, rendered for ``dialect`` (canonical SQL written once)."""
    work = sql.qualified("scratch", "__ladle_w_0")
    out = {
        "pull_all": sql.render(sql.pull_all_sql(TABLE, ["code"], ["price"], US, US + 1), dialect),
        "pull_latest": sql.render(sql.pull_latest_sql(TABLE, ["code"], ["price"], US, US + 1), dialect),
        "pull_latest_no_keys": sql.render(sql.pull_latest_sql(TABLE, [], ["price"], US, US + 1), dialect),
        "pull_query": sql.render(sql.pull_all_sql(QUERY, ["code"], ["price"], US, US), dialect, [QUERY.relation.query]),
        "create": sql.create_table_sql(
            work, [("__ladle_row", "BIGINT NOT NULL"), ("k", "VARCHAR(16)")], dialect, ["__ladle_row"]
        ),
        "drop": sql.drop_table_sql(work, dialect),
        "delete": sql.delete_window_sql(TABLE, dialect, US, US + 10),
        "schema": sql.schema_sql(QUERY, dialect),
    }
    for strategy in ("lookup", "window", "asof"):
        js = joins(QUERY)
        out[f"pit_{strategy}"] = sql.render(sql.pit_sql(js, work, strategy), dialect, sql.queries_of(js))
    return out


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_statement_parses_back_in_its_dialect(dialect: Dialect) -> None:
    for kind, text in statements(dialect).items():
        if kind == "pit_asof":
            continue  # sqlglot's doris/starrocks/mysql parsers do not know ASOF JOIN: see below
        tree = sqlglot.parse_one(text, read=dialect)
        assert tree.sql(dialect=dialect), kind
        assert kind == "schema" or "`" in text, kind  # MySQL-family identifiers


@pytest.mark.parametrize("dialect", DIALECTS)
def test_timestamps_keep_microseconds(dialect: Dialect) -> None:
    for kind, text in statements(dialect).items():
        # CAST(... AS DATETIME) without a precision truncates to the second on MySQL
        assert "AS DATETIME)" not in text, kind
        if "CAST('" in text:
            assert "AS DATETIME(6))" in text, kind
    assert "'2024-03-10 06:00:00.000000'" in statements(dialect)["pull_all"]


def test_doris_asof_join_uses_match_condition() -> None:
    text = statements("doris")["pit_asof"]
    assert "ASOF LEFT JOIN" in text and "MATCH_CONDITION (e.__ladle_t >= __ladle_asof.__t)" in text
    # Snowflake's reader knows the same ASOF JOIN ... MATCH_CONDITION grammar (with "quoted" names):
    # the rendering is well formed
    tree = sqlglot.parse_one(text.replace("`", '"'), read="snowflake")
    asof = [j for j in tree.find_all(exp.Join) if j.args.get("method") == "ASOF"]
    assert len(asof) == 2 and all(j.args.get("match_condition") is not None for j in asof)


def test_starrocks_asof_join_keeps_the_time_condition_in_on() -> None:
    text = statements("starrocks")["pit_asof"]
    assert "ASOF LEFT JOIN" in text and "MATCH_CONDITION" not in text
    assert "AND e.__ladle_t >= __ladle_asof.__t" in text
    # DuckDB's reader knows ASOF LEFT JOIN ... ON keys AND inequality: the rendering is well formed
    tree = sqlglot.parse_one(text.replace("`", '"'), read="duckdb")
    assert [j.args.get("method") for j in tree.find_all(exp.Join)].count("ASOF") == 2


def test_created_time_orders_ties_explicitly() -> None:
    for dialect in DIALECTS:
        rendered = statements(dialect)
        # The winning row among equal event times: newest created first (NULL sorts lowest, so last)
        assert "ORDER BY s.`created` DESC" in rendered["pull_latest"]
        assert "ORDER BY s.`created` DESC" in rendered["pit_window"]


def test_query_sources_are_subqueries() -> None:
    text = statements("mysql")["pull_query"]
    assert "FROM (SELECT c, event_ts, created, price FROM features.ticks WHERE price > 0) AS s" in text
    with pytest.raises(DataSourceError, match="cannot parse"):
        bad = sql.Source(SourceRelation("bad", query="SELECT FROM WHERE ("), {}, "ts")
        sql.render(sql.pull_all_sql(bad, [], [], 0, 0), "mysql", [bad.relation.query])


def test_instants_are_clamped_to_datetime_range() -> None:
    assert sql.iso(-(10**18)) == "1000-01-01 00:00:00.000000"
    assert sql.iso(10**18) == "9999-12-31 23:59:59.999999"
    assert sql.iso(US + 1) == "2024-03-10 06:00:00.000001"


def test_work_table_ddl_per_dialect() -> None:
    mysql = statements("mysql")["create"]
    assert "PRIMARY KEY (`__ladle_row`)" in mysql and "DUPLICATE KEY" not in mysql
    for dialect in ("doris", "starrocks"):
        ddl = statements(dialect)["create"]
        assert "DUPLICATE KEY(`__ladle_row`)" in ddl and "PRIMARY KEY" not in ddl


def test_insert_statement_is_a_values_template() -> None:
    text = sql.insert_sql(sql.qualified("d", "t"), ["a", "b"], "mysql")
    assert text == "INSERT INTO `d`.`t` (`a`, `b`) VALUES (%s, %s)"


@pytest.mark.parametrize(
    ("dialect", "version", "expected"),
    [
        ("doris", (4, 0, 5), True),
        ("doris", (4, 0, 4), False),
        ("doris", (4, 1, 0), True),
        ("doris", (2, 1, 7), False),
        ("starrocks", (4, 0, 0), True),
        ("starrocks", (3, 5, 9), False),
        ("mysql", (11, 4, 0), False),
        ("doris", None, False),
    ],
)
def test_asof_join_by_version(dialect: str, version: tuple[int, int, int] | None, expected: bool) -> None:
    assert has_asof_join(dialect, version) is expected


@pytest.mark.parametrize(
    ("dialect", "text", "expected"),
    [
        ("doris", "Doris version doris-2.1.7-rc03-443e87e203", (2, 1, 7)),
        ("doris", "Doris version doris-4.0.5-rc01-2f3d8a9c1b", (4, 0, 5)),
        ("starrocks", "4.0.1-0c5a2a3", (4, 0, 1)),
        ("starrocks", "3.3.5-6d81f75", (3, 3, 5)),
        ("mysql", "10.11.19-MariaDB-0+deb12u1", (10, 11, 19)),
        ("doris", "", None),
    ],
)
def test_engine_versions_are_parsed(dialect: str, text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(dialect, text) == expected


def test_config_defaults_and_secret() -> None:
    doris = DorisOfflineStoreConfig.model_validate({"type": "doris", "database": "f", "password": "hunter2"})
    mysql = DorisOfflineStoreConfig.model_validate({"type": "mysql", "database": "f"})
    assert doris.effective_port() == 9030 and mysql.effective_port() == 3306
    assert "hunter2" not in repr(doris) and doris.password.get_secret_value() == "hunter2"
    assert doris.work_db() == "f"


def test_sources_map_to_tables() -> None:
    from ladle import DorisSource, FileSource, PushSource

    block = DorisOfflineStoreConfig.model_validate({"type": "doris", "database": "f"})
    assert source_relation(FileSource(name="ticks", path="x.parquet", timestamp_field="t"), block) == SourceRelation(
        "ticks", "f", "ticks"
    )
    other = DorisSource(name="q", table="lake.ticks", timestamp_field="t")
    assert source_relation(other, block) == SourceRelation("q", "lake", "ticks")
    own = DorisSource(name="o", table="ticks", database="g", timestamp_field="t")
    pushed = PushSource(name="p", batch_source=own)
    assert source_relation(pushed, block) == SourceRelation("o", "g", "ticks")
    with pytest.raises(DataSourceError, match="give it a name"):
        source_relation(FileSource(path="x.parquet", timestamp_field="t"), block)
