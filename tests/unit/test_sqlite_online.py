"""SQLite-only behaviour of the online store (the shared cases are in tests/conformance)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ladle import Entity, FeatureView, Field, FileSource, Float64, String, ValueType
from ladle.config import RepoConfig
from ladle.errors import BackendUnavailableError
from ladle.online.base import ReadRequest
from ladle.online.sqlite.store import SqliteOnlineStore, SqliteOnlineStoreConfig

T0 = 1_704_067_200_000_000
TS = pa.timestamp("us", tz="UTC")
commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
source = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
view = FeatureView(
    name="prices", source=source, entities=[commodity], schema=[Field(name="price", dtype=Float64)], ttl=timedelta(0)
)


def open_store(root: Path, **config: Any) -> SqliteOnlineStore:
    return SqliteOnlineStore(
        RepoConfig(project="p", online_store=SqliteOnlineStoreConfig(path="online.db", **config), repo_path=root)
    )


def batch(codes: list[str], price: float, event: int) -> pa.Table:
    return pa.table(
        {
            "commodity_code": codes,
            "price": [price] * len(codes),
            "event_timestamp": pa.array([event] * len(codes), pa.int64()).cast(TS),
        }
    )


def prices(store: SqliteOnlineStore, codes: list[str], project: str = "p") -> list[Any]:
    return store.read(project, [ReadRequest(view, ["price"], {"commodity_code": codes})])[0].values["price"]


def test_file_is_relative_to_the_repo_and_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.ping()
    assert store.path == tmp_path / "online.db"
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_bulk_writes_commit_in_groups_and_restore_the_cache(tmp_path: Path) -> None:
    store = open_store(tmp_path, bulk_commit_rows=3, bulk_cache_mb=8)
    before = store._conn().execute("PRAGMA cache_size").fetchone()[0]
    commits: list[int] = []
    store.update("p", keep=[view], delete=[])
    other = sqlite3.connect(store.path)

    def batches() -> Any:
        for i in range(5):
            yield batch([f"K{i}a", f"K{i}b"], float(i), T0 + i)
            # what another connection sees: only committed groups
            commits.append(other.execute('SELECT count(*) FROM "p:prices"').fetchone()[0])

    assert store.write_batches("p", view, batches()) == 10
    assert commits == [0, 4, 4, 8, 8]  # a commit after every 3+ rows (4 rows: two batches)
    assert prices(store, ["K0a", "K4b"]) == [0.0, 4.0]
    assert store._conn().execute("PRAGMA cache_size").fetchone()[0] == before


def test_a_failing_bulk_write_rolls_back_the_open_group(tmp_path: Path) -> None:
    store = open_store(tmp_path, bulk_commit_rows=4)

    def batches() -> Any:
        yield batch(["A", "B"], 1.0, T0)
        yield batch(["C", "D"], 1.0, T0)  # the group of A-D commits here
        yield batch(["E"], 1.0, T0)
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError):
        store.write_batches("p", view, batches())
    assert prices(store, ["A", "D", "E"]) == [1.0, 1.0, None]
    store.write("p", view, batch(["E"], 2.0, T0))  # the connection is usable again
    assert prices(store, ["E"]) == [2.0]


def test_another_instance_dropping_the_table_is_noticed(tmp_path: Path) -> None:
    first, second = open_store(tmp_path), open_store(tmp_path)
    first.write("p", view, batch(["A"], 1.0, T0))
    assert prices(first, ["A", "B"]) == [1.0, None]  # first caches the table
    second.delete_view("p", view)
    assert prices(first, ["A", "B"]) == [None, None]
    first.write("p", view, batch(["A"], 3.0, T0))
    assert prices(second, ["A"]) == [3.0]


def _child_reads(store: SqliteOnlineStore, queue: Any) -> None:
    queue.put(prices(store, ["A"]))


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.write("p", view, batch(["A"], 5.0, T0))
    prices(store, ["A"])  # the parent has a connection now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_reads, args=(store, queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [5.0]
    assert prices(store, ["A"]) == [5.0]  # and the parent's still works


def test_retyped_feature_reads_null_from_old_rows(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.write("p", view, batch(["A"], 1.0, T0))
    retyped = FeatureView(
        name="prices", source=source, entities=[commodity], schema=[Field(name="price", dtype=String)]
    )
    store.update("p", keep=[retyped], delete=[])
    got = store.read("p", [ReadRequest(retyped, ["price"], {"commodity_code": ["A"]})])[0]
    assert got.event_ts == [T0] and got.values == {"price": [None]}


def test_unreachable_file_is_backend_unavailable(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    store = SqliteOnlineStore(
        RepoConfig(project="p", online_store=SqliteOnlineStoreConfig(path="blocker/online.db"), repo_path=tmp_path)
    )
    with pytest.raises(BackendUnavailableError, match="blocker"):
        store.ping()
