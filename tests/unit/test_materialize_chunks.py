"""Materialization in entity-hash chunks (``materialization.memory_budget``): sizing, coverage, equality.

Expected rows come from a brute-force reference (newest event, then newest created time, per
entity) computed here in Python, never from the code under test. The peak-RSS test is in
test_materialize_memory.py.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, ValueType
from ladle.config import MaterializationConfig, parse_size
from ladle.errors import ConfigError
from ladle.materialize import partitions
from ladle.materialize.partitions import BUCKETS, ChunkPlanner, HashRange, chunked_latest, partitioned_pull
from ladle.offline.duckdb import DuckDBOfflineStore

T0 = datetime(2024, 3, 1, tzinfo=UTC)
START, END = T0, T0 + timedelta(days=10)
TS = pa.timestamp("us", tz="UTC")


# -- sizes and configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1GB", 2**30), ("512MB", 512 * 2**20), ("2GiB", 2 * 2**30), ("1.5G", 3 * 2**29), ("300 MB", 300 * 2**20)],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "1PB", "-1GB", ""])
def test_bad_sizes_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match=r"materialization\.memory_budget"):
        MaterializationConfig(memory_budget=text)


def test_a_budget_below_the_reserve_is_refused_before_any_run(tmp_path: Path) -> None:
    store = _store(tmp_path, _rows(10), budget="200MB")
    with pytest.raises(ConfigError, match=r"memory_budget \(200 MB\) is below"):
        store.materialize(START, END, ["items"])
    assert store.registry.watermark("items") is None


# -- bucket ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("estimate", "target"), [(1, 10), (10_000, 100), (10_000, 3), (50, 10_000), (10**9, 7)])
def test_ranges_cover_every_bucket_once(estimate: int, target: int) -> None:
    rng = random.Random(estimate + target)
    planner = ChunkPlanner(estimate, target)
    covered: list[int] = []
    while not planner.done():
        part = planner.next_range()
        assert part.lo < part.hi
        covered += range(part.lo, part.hi)
        planner.observe(part, rng.randint(0, 3 * target))  # whatever the chunks turn out to hold
    assert covered == list(range(BUCKETS))


def test_ranges_follow_the_observed_density() -> None:
    planner = ChunkPlanner(estimated_entities=BUCKETS * 10, target=100)  # 10 per bucket: 10 buckets a chunk
    first = planner.next_range()
    assert first.hi - first.lo == 10
    planner.observe(first, 20)  # only 2 per bucket really: the next chunks get wider
    assert planner.next_range().hi - first.hi == 40  # never below a quarter of the estimate: 2.5/bucket


# -- chunked pulls against a reference --------------------------------------------------------------


def _rows(entities: int, seed: int = 3) -> pa.Table:
    """Rows of ``entities`` entities: several rows each, ties on event time, null created times, null keys."""
    rng = random.Random(seed)
    ids, codes, events, created, values = [], [], [], [], []
    for e in range(entities):
        for _ in range(rng.randint(1, 3)):
            ids.append(e)
            codes.append(f"c{e % 7}")
            hour = rng.randint(0, 6)
            events.append(T0 + timedelta(hours=hour))
            created.append(None if rng.random() < 0.1 else T0 + timedelta(hours=hour, minutes=rng.randint(0, 5)))
            values.append(rng.random())
    ids.append(None)  # a null key: never materialized
    codes.append("c0")
    events.append(T0)
    created.append(T0)
    values.append(1.0)
    return pa.table(
        {
            "item_id": pa.array(ids, pa.int64()),
            "code": pa.array(codes, pa.string()),
            "ts": pa.array(events, TS),
            "created": pa.array(created, TS),
            "value": pa.array(values, pa.float64()),
        }
    )


def _reference(rows: pa.Table, keys: tuple[str, ...]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Newest row per key: greatest event time, then greatest created time (null created loses)."""
    best: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for r in rows.to_pylist():
        key = tuple(r[k] for k in keys)
        if any(k is None for k in key):
            continue
        rank = (r["ts"], r["created"] is not None, r["created"] or T0)
        held = best.get(key)
        if held is None or rank > held[0]:
            best[key] = (rank, r["value"], r["ts"])
    return {k: (v[1], v[2]) for k, v in best.items()}


def _store(root: Path, rows: pa.Table, budget: str | None = None) -> FeatureStore:
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, root / "data" / "items.parquet", row_group_size=500)
    config: dict[str, Any] = {
        "project": "chunks",
        "registry": {"path": str(root / "registry.db"), "cache_ttl_seconds": 0},
        "online_store": {"type": "sqlite", "path": str(root / "online.db")},
        "offline_store": {"type": "duckdb"},
    }
    if budget:
        config["materialization"] = {"memory_budget": budget, "online_write_batch_size": 97}
    store = FeatureStore(config=config, repo_path=root)
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)
    code = Entity(name="code", join_keys=["code"], value_type=ValueType.STRING)
    source = FileSource(
        name="items", path="data/items.parquet", timestamp_field="ts", created_timestamp_column="created"
    )
    schema = [Field(name="value", dtype=Float64)]
    views = [
        FeatureView(name="items", entities=[item], ttl=timedelta(0), schema=schema, source=source),
        FeatureView(name="pairs", entities=[item, code], ttl=timedelta(0), schema=schema, source=source),
        FeatureView(name="codes", entities=[code], ttl=timedelta(0), schema=schema, source=source),
    ]
    store.apply([item, code, source, *views])
    return store


def _as_dict(batches: Any, keys: tuple[str, ...]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    table = pa.Table.from_batches(list(batches))
    out = {}
    for r in table.to_pylist():
        key = tuple(r[k] for k in keys)
        assert key not in out, f"entity {key} pulled twice"
        out[key] = (r["value"], r["event_timestamp"])
    return out


@pytest.mark.parametrize(("view", "keys"), [("items", ("item_id",)), ("pairs", ("code", "item_id"))])
def test_chunked_pull_equals_the_reference_and_the_unchunked_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view: str, keys: tuple[str, ...]
) -> None:
    rows = _rows(3_000)
    store = _store(tmp_path, rows)
    fv = store.registry.snapshot().feature_view(view)
    monkeypatch.setattr(partitions, "MAX_CHUNK_ENTITIES", 250)  # ~12 chunks of this small input
    pull = partitioned_pull(store.offline_store)
    assert isinstance(pull, DuckDBOfflineStore)
    seen: list[HashRange] = []
    real = pull.pull_latest_range

    def recording(*args: Any) -> Any:
        seen.append(args[3])
        return real(*args)

    monkeypatch.setattr(pull, "pull_latest_range", recording)
    chunks = chunked_latest(pull, fv, START, END, parse_size("1GB"), batch_rows=101)
    assert chunks is not None
    got = _as_dict(chunks, keys)
    assert got == _reference(rows, keys)
    assert got == _as_dict(store.offline_store.pull_latest(fv, START, END, batch_rows=1_000), keys)
    assert len(seen) >= 8 and seen[0].lo == 0 and seen[-1].hi == BUCKETS


def test_a_window_that_fits_is_pulled_in_one_piece(tmp_path: Path) -> None:
    rows = _rows(300)
    store = _store(tmp_path, rows)
    fv = store.registry.snapshot().feature_view("items")
    pull = partitioned_pull(store.offline_store)
    assert pull is not None
    assert pull.estimate_entities(fv, START, END) == rows.num_rows  # the footers' count: under the sample size
    assert chunked_latest(pull, fv, START, END, parse_size("1GB"), batch_rows=100) is None


def test_the_estimate_samples_large_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows(3_000)  # ~6,000 rows, 3,000 entities
    store = _store(tmp_path, rows)
    monkeypatch.setattr("ladle.offline.ranges.SAMPLE_ROWS", 1_000)
    pull = partitioned_pull(store.offline_store)
    assert pull is not None
    estimate = pull.estimate_entities(store.registry.snapshot().feature_view("items"), START, END)
    assert 1_500 <= estimate <= 6_000  # distinct per sampled row, scaled to the row count
    codes = pull.estimate_entities(store.registry.snapshot().feature_view("codes"), START, END)
    assert codes <= 100  # 7 codes: the sample sees how few there are


# -- the materializer end to end ----------------------------------------------------------------


def _online(store: FeatureStore, view: str, ids: list[int]) -> list[Any]:
    from ladle.retrieval.online import OnlineRetriever

    retriever = OnlineRetriever(store.registry, store.online_store, clock=T0.timestamp)
    return retriever.get_online_features([f"{view}:value"], {"item_id": ids}).values[1]


def test_chunked_materialization_writes_the_reference_and_records_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(2_000)
    store = _store(tmp_path, rows, budget="1GB")
    monkeypatch.setattr(partitions, "MAX_CHUNK_ENTITIES", 300)
    pulled: list[int] = []
    real = DuckDBOfflineStore.pull_latest_range

    def counting(self: DuckDBOfflineStore, *args: Any) -> Any:
        pulled.append(args[3].hi - args[3].lo)
        return real(self, *args)

    monkeypatch.setattr(DuckDBOfflineStore, "pull_latest_range", counting)
    (result,) = store.materialize(START, END, ["items"])
    reference = _reference(rows, ("item_id",))
    assert len(pulled) > 3 and sum(pulled) == BUCKETS
    assert (result.rows_read, result.rows_written) == (len(reference), len(reference))
    ids = sorted(k[0] for k in reference)
    assert _online(store, "items", ids) == [reference[(i,)][0] for i in ids]
    assert store.registry.watermark("items") == END
    assert [r.status for r in store.registry.runs("items")] == ["succeeded"]  # type: ignore[attr-defined]
    (again,) = store.materialize(START, END, ["items"])  # idempotent
    assert again.rows_read == len(reference)
    assert _online(store, "items", ids) == [reference[(i,)][0] for i in ids]


def test_a_failure_in_a_later_chunk_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows(2_000)
    store = _store(tmp_path, rows, budget="1GB")
    monkeypatch.setattr(partitions, "MAX_CHUNK_ENTITIES", 300)
    real = DuckDBOfflineStore.pull_latest_range
    calls: list[int] = []

    def failing(self: DuckDBOfflineStore, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("source vanished (simulated)")
        return real(self, *args)

    monkeypatch.setattr(DuckDBOfflineStore, "pull_latest_range", failing)
    with pytest.raises(OSError, match="simulated"):
        store.materialize(START, END, ["items"])
    assert store.registry.watermark("items") is None
    monkeypatch.setattr(DuckDBOfflineStore, "pull_latest_range", real)
    (result,) = store.materialize(START, END, ["items"])
    reference = _reference(rows, ("item_id",))
    ids = sorted(k[0] for k in reference)
    assert result.rows_read == len(reference)
    assert _online(store, "items", ids) == [reference[(i,)][0] for i in ids]
    assert store.registry.watermark("items") == END


def test_windows_that_fit_materialize_unchunked(tmp_path: Path) -> None:
    store = _store(tmp_path, _rows(50), budget="2GB")
    results = store.materialize(START, END, ["items", "codes"])
    assert [r.rows_written for r in results] == [50, 7]


# -- the hash is one function, the same in every process ------------------------------------------------

_BUCKETS_CHILD = """
import json, duckdb
from ladle.offline.hashing import bucket_sql
con = duckdb.connect()
rows = con.execute(
    "SELECT " + bucket_sql(["k::VARCHAR"]) + ", " + bucket_sql(["i::BIGINT", "k::VARCHAR"])
    + " FROM (SELECT 'c' || range AS k, range AS i FROM range(2000))"
).fetchall()
print(json.dumps(rows))
"""


def test_buckets_are_the_same_in_every_process_and_spread() -> None:
    import json
    import subprocess
    import sys

    runs = [
        json.loads(
            subprocess.run([sys.executable, "-c", _BUCKETS_CHILD], capture_output=True, text=True, check=True).stdout
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]  # Ray workers and the driver cut entities alike
    singles = [r[0] for r in runs[0]]
    assert all(0 <= b < BUCKETS for b in singles)
    assert len(set(singles)) > 1500  # 2,000 keys over 4,096 buckets: few collisions
    assert [r[0] for r in runs[0]] != [r[1] for r in runs[0]]
