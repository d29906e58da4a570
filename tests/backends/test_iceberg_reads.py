"""Iceberg reads: the window is pushed into scan planning, both read paths agree, columns by field id."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pyiceberg.table.name_mapping import create_mapping_from_schema

from ladle.errors import DataSourceError
from ladle.offline.iceberg import reads
from ladle.offline.iceberg.store import IcebergOfflineStore

from .iceberg_support import (
    FAR_FUTURE,
    FAR_PAST,
    day,
    entity,
    open_iceberg,
    price_rows,
    prices_source,
    prices_view,
    select,
)

TEN_DAYS = price_rows(["A", "B"] * 10, [d + 0.5 for d in range(10) for _ in (0, 1)], [float(i) for i in range(20)])


@pytest.fixture
def store(tmp_path: Path) -> IcebergOfflineStore:
    store = open_iceberg(tmp_path)
    store.append(prices_source(), TEN_DAYS)
    return store


def planned(store: IcebergOfflineStore, lo_days: float | None, hi_days: float | None) -> list[str]:
    table = store._table(prices_source())
    pinned = reads.Pinned("prices", table, table.current_snapshot())
    lo = None if lo_days is None else int(day(lo_days).timestamp() * 1_000_000)
    hi = None if hi_days is None else int(day(hi_days).timestamp() * 1_000_000)
    return [t.file.file_path for t in reads.plan(pinned, reads.window_filter(pinned, "event_ts", lo, hi))]


def test_window_prunes_day_partitions(store: IcebergOfflineStore) -> None:
    everything = planned(store, None, None)
    assert len(everything) == 10  # one data file per day partition
    narrow = planned(store, 4.25, 4.75)
    assert len(narrow) == 1 and "event_ts_day=2024-01-05" in narrow[0]
    assert len(planned(store, None, 2.9)) == 3
    assert planned(store, 20, 30) == []


def test_historical_reads_only_the_files_of_the_entity_window(store: IcebergOfflineStore) -> None:
    view = prices_view(prices_source(), ttl=timedelta(hours=12))
    job = store.historical(entity(["A", "B"], [5.6, 5.9]), "event_timestamp", [select(view)], False)
    # The ttl bounds the rows to [5.1, 5.9] days: only day 5's partition is in the query.
    days = {part.split("event_ts_day=")[1][:10] for part in job.sql.split("'") if "event_ts_day=" in part}
    assert days == {"2024-01-06"}
    assert job.to_arrow().column("price").to_pylist() == [10.0, 11.0]
    assert store.last_read_paths["prices"] == "direct"


def test_pull_latest_reads_only_the_window(store: IcebergOfflineStore) -> None:
    view = prices_view(prices_source())
    rows = [r for b in store.pull_latest(view, day(2), day(3)) for r in b.to_pylist()]
    assert sorted((r["code"], r["price"]) for r in rows) == [("A", 4.0), ("B", 5.0)]
    empty = list(store.pull_latest(view, day(30), day(31)))
    assert sum(b.num_rows for b in empty) == 0
    assert store.last_read_paths["prices"] == "empty"


def force_arrow_path(store: IcebergOfflineStore) -> None:
    """A name mapping (files may lack field ids) makes the store read through pyiceberg's Arrow reader."""
    table = store._table(prices_source())
    mapping = create_mapping_from_schema(table.schema()).model_dump_json()
    with table.transaction() as tx:
        tx.set_properties({"schema.name-mapping.default": mapping})


def test_arrow_path_gives_the_same_answers(store: IcebergOfflineStore) -> None:
    view = prices_view(prices_source(), ttl=timedelta(days=2))
    frame = entity(["A", "B", "A", "B"], [0.4, 3.7, 9.9, 12.0])
    direct = store.historical(frame, "event_timestamp", [select(view)], False).to_arrow()
    pulled_direct = sorted(r["price"] for b in store.pull_all(view, FAR_PAST, FAR_FUTURE) for r in b.to_pylist())
    assert store.last_read_paths["prices"] == "direct"
    force_arrow_path(store)
    arrow = store.historical(frame, "event_timestamp", [select(view)], False).to_arrow()
    assert store.last_read_paths["prices"] == "arrow"
    assert arrow.equals(direct)
    assert direct.column("price").to_pylist() == [None, 7.0, 18.0, None]
    pulled_arrow = sorted(r["price"] for b in store.pull_all(view, FAR_PAST, FAR_FUTURE) for r in b.to_pylist())
    assert pulled_arrow == pulled_direct == [float(i) for i in range(20)]


@pytest.mark.parametrize("arrow_path", [False, True], ids=["direct", "arrow"])
def test_renamed_column_reads_under_its_new_name(store: IcebergOfflineStore, arrow_path: bool) -> None:
    with store._table(prices_source()).update_schema() as update:
        update.rename_column("price", "px")
    if arrow_path:
        force_arrow_path(store)
    assert "px" in store.source_schema(prices_source()).names
    view = prices_view(prices_source(), features=["px"])
    out = store.historical(entity(["A", "B"], [0.5, 9.5]), "event_timestamp", [select(view)], False).to_arrow()
    assert out.column("px").to_pylist() == [0.0, 19.0]
    assert store.last_read_paths["prices"] == ("arrow" if arrow_path else "direct")


def test_a_column_added_later_is_null_in_older_rows(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    source = prices_source()
    store.append(source, price_rows(["A"], [0], [1.0]))
    assert "volume" not in store.source_schema(source).names
    commits = len(store._table(source).metadata.metadata_log)
    store.append(source, price_rows(["A", "B"], [1, 1], [2.0, 3.0], volume=[10.0, 20.0]))
    assert len(store._table(source).metadata.metadata_log) == commits + 1  # the new column and the rows: one commit
    assert store.source_schema(source).field("volume").type.equals("double")
    view = prices_view(source, features=["price", "volume"])
    out = store.historical(entity(["A", "A", "B"], [0.5, 1.5, 1.5]), "event_timestamp", [select(view)], False)
    table = out.to_arrow()
    assert table.column("volume").to_pylist() == [None, 10.0, 20.0]
    assert table.column("price").to_pylist() == [1.0, 2.0, 3.0]
    rows = sorted((r["price"], r["volume"]) for b in store.pull_all(view, FAR_PAST, FAR_FUTURE) for r in b.to_pylist())
    assert rows == [(1.0, None), (2.0, 10.0), (3.0, 20.0)]


def test_a_view_over_a_column_the_table_lacks_is_a_data_source_error(store: IcebergOfflineStore) -> None:
    view = prices_view(prices_source(), features=["volume"])
    with pytest.raises(DataSourceError, match="volume"):
        store.historical(entity(["A"], [1]), "event_timestamp", [select(view)], False)
