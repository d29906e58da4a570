"""Iceberg writes: one snapshot per write, idempotent append retries, window replacement, typed errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from ladle import IcebergSource, JsonFormat, KafkaSource, PushSource
from ladle.errors import DataSourceError, SchemaMismatchError
from ladle.offline.iceberg.catalog import TableRef
from ladle.offline.iceberg.store import IcebergOfflineStore
from ladle.offline.iceberg.tables import load_table
from ladle.offline.iceberg.writes import ROWS_HASH

from .iceberg_support import (
    FAR_FUTURE,
    FAR_PAST,
    TS,
    day,
    entity,
    open_iceberg,
    price_rows,
    prices_source,
    prices_view,
    select,
)


def all_rows(store: IcebergOfflineStore, name: str = "prices") -> list[tuple[object, ...]]:
    view = prices_view(prices_source(name))
    rows = [r for b in store.pull_all(view, FAR_PAST, FAR_FUTURE) for r in b.to_pylist()]
    return sorted((r["code"], r["event_timestamp"], r["price"]) for r in rows)


def snapshots(store: IcebergOfflineStore, name: str = "prices") -> list[int]:
    return [s.snapshot_id for s in store._table(prices_source(name)).snapshots()]


def test_append_is_one_snapshot_and_a_retry_adds_nothing(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    rows = price_rows(["A", "B"], [0, 1], [1.0, 2.0])
    assert store.append(prices_source(), rows) == 2
    first = snapshots(store)
    assert len(first) == 1
    assert store._table(prices_source()).current_snapshot().summary.get(ROWS_HASH)  # type: ignore[union-attr]
    # The same rows again (a retry after a lost reply): nothing added, no snapshot.
    assert store.append(prices_source(), rows) == 0
    assert snapshots(store) == first
    assert all_rows(store) == [("A", day(0), 1.0), ("B", day(1), 2.0)]
    # Different rows are appended; then the first batch again is still a retry (it is among recent snapshots).
    assert store.append(prices_source(), price_rows(["A"], [2], [3.0])) == 1
    assert store.append(prices_source(), rows) == 0
    assert len(snapshots(store)) == 2
    assert [r[2] for r in all_rows(store)] == [1.0, 3.0, 2.0]


def test_push_source_appends_to_its_batch_table(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    push = PushSource(name="prices_push", batch_source=prices_source())
    assert store.append(push, price_rows(["A"], [0], [1.0])) == 1
    assert all_rows(store) == [("A", day(0), 1.0)]


def test_replace_window_is_one_commit_that_keeps_rows_outside(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    source = prices_source()
    # Days 0..4 at 06:00 and 18:00; a row without event time (it is in no window).
    days = [d + h for d in range(5) for h in (0.25, 0.75)]
    rows = price_rows(["A"] * 10, days, [float(i) for i in range(10)])
    rows = pa.concat_tables([rows, pa.table({"code": ["Z"], "event_ts": pa.array([None], TS), "price": [99.0]})])
    store.append(source, rows)
    before = len(snapshots(store))
    # Replace [day 1 12:00, day 3 00:00): the 18:00 row of day 1 and both rows of day 2. The window
    # starts mid-partition, so day 1's file is rewritten without its 18:00 row.
    new = price_rows(["A", "A", "A"], [1.9, 2.5, 7.0], [100.0, 101.0, 555.0])  # day 7 is outside: ignored
    assert store.replace_window(source, new, day(1.5), day(3)) == 2
    assert len(snapshots(store)) == before + 1
    expected = sorted(
        [("A", day(d), float(i)) for i, d in enumerate(days) if not day(1.5) <= day(d) < day(3)]
        + [("A", day(1.9), 100.0), ("A", day(2.5), 101.0), ("Z", None, 99.0)],
        key=lambda r: (r[0], r[1] or day(0)),
    )
    got = sorted(all_rows_with_nulls(store), key=lambda r: (r[0], r[1] or day(0)))
    assert got == expected
    # Re-running the same window with the same rows commits nothing and changes nothing.
    assert store.replace_window(source, new, day(1.5), day(3)) == 2
    assert len(snapshots(store)) == before + 1
    assert sorted(all_rows_with_nulls(store), key=lambda r: (r[0], r[1] or day(0))) == expected
    # An empty replacement deletes the window's rows.
    assert store.replace_window(source, new.slice(0, 0), day(2), day(3)) == 0
    assert [r for r in all_rows(store) if r[1] is not None and day(2) <= r[1] < day(3)] == []


def all_rows_with_nulls(store: IcebergOfflineStore) -> list[tuple[object, ...]]:
    table = store._table(prices_source()).scan().to_arrow()
    return [(r["code"], r["event_ts"], r["price"]) for r in table.to_pylist()]


def test_replace_window_on_a_missing_table_creates_it(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    assert store.replace_window(prices_source(), price_rows(["A"], [0.5], [1.0]), day(0), day(1)) == 1
    assert all_rows(store) == [("A", day(0.5), 1.0)]
    assert (
        store.replace_window(prices_source("nothing"), price_rows(["A"], [0.5], [1.0]).slice(0, 0), day(0), day(1)) == 0
    )


def test_wrong_column_types_change_nothing(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    store.append(prices_source(), price_rows(["A"], [0], [1.0]))
    table = store._table(prices_source())
    schema, snaps = table.schema(), snapshots(store)
    bad = pa.table({"code": ["A"], "event_ts": pa.array([day(1)], TS), "price": ["not a number"], "new_column": [1.0]})
    with pytest.raises(SchemaMismatchError, match="price"):
        store.append(prices_source(), bad)
    with pytest.raises(SchemaMismatchError, match="price"):
        store.replace_window(prices_source(), bad, day(0), day(2))
    table = store._table(prices_source())
    assert table.schema() == schema  # new_column was not added
    assert snapshots(store) == snaps
    with pytest.raises(SchemaMismatchError, match="event_ts"):
        store.append(prices_source(), pa.table({"code": ["A"], "price": [1.0]}))
    untyped = price_rows(["A"], [1], [1.0]).append_column("nothing", pa.nulls(1))
    with pytest.raises(SchemaMismatchError, match="nothing"):
        store.append(prices_source(), untyped)
    with pytest.raises(SchemaMismatchError, match="nothing"):
        store.append(prices_source("new_table"), untyped)
    assert store._table(prices_source()).schema() == schema and snapshots(store) == snaps
    assert load_table(store.catalogs.get(), TableRef("", "tests.new_table")) is None


def test_missing_table_and_namespace_are_data_source_errors(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    missing = prices_view(prices_source("absent"))
    with pytest.raises(DataSourceError, match=r"tests\.absent does not exist"):
        store.historical(entity(["A"], [0]), "event_timestamp", [select(missing)], False)
    with pytest.raises(DataSourceError, match=r"tests\.absent"):
        list(store.pull_latest(missing, day(0), day(1)))
    with pytest.raises(DataSourceError, match=r"tests\.absent"):
        store.source_schema(missing.batch_source)
    elsewhere = IcebergSource(name="x", table="no_such_namespace.prices", timestamp_field="event_ts")
    with pytest.raises(DataSourceError, match=r"no_such_namespace\.prices does not exist"):
        store.source_schema(elsewhere)
    with pytest.raises(DataSourceError, match="catalog 'lake'"):
        store.source_schema(IcebergSource(name="y", table="a.b", timestamp_field="event_ts", catalog="lake"))


def test_a_stream_view_whose_table_the_stream_has_not_created_pulls_nothing(tmp_path: Path) -> None:
    # ``ladle stream`` creates a Kafka source's table at its first flush: before that, materializing
    # the view finds no rows (as on Parquet), while a batch view over a missing table is an error.
    store = open_iceberg(tmp_path)
    stream = KafkaSource(
        name="ticks_stream",
        kafka_bootstrap_servers="127.0.0.1:9",
        topic="ticks",
        timestamp_field="event_ts",
        message_format=JsonFormat(schema_json="code string, event_ts timestamp, price double"),
        batch_source=prices_source("not_yet_streamed"),
    )
    view = prices_view(stream)
    assert list(store.pull_latest(view, day(0), day(1))) == []
    assert list(store.pull_all(view, day(0), day(1))) == []
    assert load_table(store.catalogs.get(), TableRef("", "tests.not_yet_streamed")) is None
    with pytest.raises(DataSourceError, match=r"tests\.not_yet_streamed does not exist"):
        list(store.pull_latest(prices_view(prices_source("not_yet_streamed")), day(0), day(1)))


def test_unreadable_catalog_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").write_text("this is not a SQLite database\n" * 100)
    store = open_iceberg(tmp_path, catalog={"type": "sql", "uri": "sqlite:///catalog.db", "warehouse": "wh"})
    with pytest.raises(DataSourceError) as info:
        store.source_schema(prices_source())
    assert "\n" not in str(info.value) and "catalog" in str(info.value)


def test_replace_window_with_a_new_column_is_one_commit(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    store.append(prices_source(), price_rows(["A", "A"], [0.5, 1.5], [1.0, 2.0]))
    commits = len(store._table(prices_source()).metadata.metadata_log)
    new = price_rows(["A"], [1.25], [5.0], volume=[7.0])
    assert store.replace_window(prices_source(), new, day(1), day(2)) == 1
    table = store._table(prices_source())
    assert len(table.metadata.metadata_log) == commits + 1
    rows = sorted((r["event_ts"], r["price"], r["volume"]) for r in table.scan().to_arrow().to_pylist())
    assert rows == [(day(0.5), 1.0, None), (day(1.25), 5.0, 7.0)]
