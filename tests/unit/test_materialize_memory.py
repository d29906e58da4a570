"""Peak RSS of a materialization stays under ``materialization.memory_budget`` for an input far larger.

Each measurement is a fresh child process (its own peak RSS: ``VmHWM`` of /proc/self/status; Linux
only, like the test). The control child
pulls the same window unchunked and must peak at more than 1.5 times the budget, which shows the
input is large enough to matter; the budgeted child materializes into SQLite and must stay under the
budget. Values read back are compared with a NumPy reference (newest event, then newest created
time, per entity).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc (Linux)"),
]

ENTITIES = 6_400_000
BUDGET_MB = 400
FEATURES = 3
BASE_US = int(np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64))

CHILD = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, ValueType

    repo, mode, budget, FEATURES = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = {
        "project": "rss",
        "registry": {"path": str(repo / f"registry-{mode}.db"), "cache_ttl_seconds": 0},
        "online_store": {"type": "sqlite", "path": str(repo / "online.db"), "bulk_cache_mb": 16},
        "offline_store": {"type": "duckdb"},
        "materialization": {"memory_budget": budget, "online_write_batch_size": 10_000},
    }
    store = FeatureStore(config=config, repo_path=repo)
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)
    source = FileSource(name="src", path="data", timestamp_field="ts", created_timestamp_column="created")
    schema = [Field(name=f"f{i}", dtype=Float64) for i in range(FEATURES)]
    view = FeatureView(name="v", entities=[item], ttl=timedelta(0), schema=schema, source=source)
    store.apply([item, source, view])
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    if mode == "unchunked":
        fv = store.registry.snapshot().feature_view("v")
        rows = sum(b.num_rows for b in store.offline_store.pull_latest(fv, start, end, batch_rows=50_000))
    else:
        (result,) = store.materialize(start, end, ["v"])
        rows = result.rows_written
        assert store.registry.watermark("v") == end
    # VmHWM, not getrusage: ru_maxrss survives exec, so it would include the forking test process
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    peak = int(status["VmHWM"].split()[0]) // 1024
    print(json.dumps({"rows": rows, "peak_mb": peak}))
    """
)


def _generate(repo: Path) -> pa.Table:
    """Four Parquet files: every entity once, a fifth of them twice (an older and a newer row)."""
    rng = np.random.default_rng(11)
    data = repo / "data"
    data.mkdir(parents=True)
    per = ENTITIES // 4
    reference = []
    for part in range(4):
        ids = np.arange(part * per, (part + 1) * per, dtype=np.int64)
        ids = np.concatenate([ids, ids[: per // 5]])
        ts = BASE_US + rng.integers(0, 20 * 86_400 * 10**6, len(ids))
        columns = {
            "item_id": ids,
            "ts": pa.array(ts, pa.timestamp("us", "UTC")),
            "created": pa.array(ts + 1_000, pa.timestamp("us", "UTC")),
            **{f"f{i}": rng.random(len(ids)) for i in range(FEATURES)},
        }
        table = pa.table(columns)
        pq.write_table(table, data / f"part{part}.parquet", row_group_size=65_536)
        reference.append(table.select(["item_id", "ts", "f0"]))
    return pa.concat_tables(reference)


def _newest(rows: pa.Table, entities: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``entities`` distinct entity ids drawn at random (sorted) and the f0 of each one's newest row.

    The reference is computed on the rows of the drawn entities only (created = ts + 1 ms: ts decides):
    the same newest-row rule as over the whole input, without sorting millions of rows.
    """
    ids = rows.column("item_id").to_numpy()
    seen = np.bincount(ids)  # rows per entity id (the ids are small non-negative integers)
    pick = np.sort(np.random.default_rng(seed).choice(np.flatnonzero(seen), entities, replace=False))
    chosen = np.zeros(len(seen), dtype=bool)
    chosen[pick] = True
    mine = chosen[ids]
    ids = ids[mine]
    ts = rows.column("ts").cast(pa.int64()).to_numpy()[mine]
    f0 = rows.column("f0").to_numpy()[mine]
    order = np.lexsort((ts, ids))
    last = np.r_[ids[order][1:] != ids[order][:-1], True]
    assert np.array_equal(ids[order][last], pick)
    return ids[order][last], f0[order][last]


def _child(repo: Path, mode: str) -> dict[str, int]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(repo), mode, f"{BUDGET_MB}MB", str(FEATURES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_peak_rss_stays_under_the_budget_for_an_input_far_larger(tmp_path: Path) -> None:
    rows = _generate(tmp_path)
    ids, f0 = _newest(rows, 3_000)

    control = _child(tmp_path, "unchunked")
    assert control["rows"] == ENTITIES
    # The unchunked pull of the same input must clearly exceed the budget (measured 684-729 MB).
    assert control["peak_mb"] > 1.5 * BUDGET_MB, f"the input is too small to test the budget: {control}"

    budgeted = _child(tmp_path, "budgeted")
    print(f"unchunked {control} budgeted {budgeted} (budget {BUDGET_MB} MB)")
    assert budgeted["rows"] == ENTITIES
    assert budgeted["peak_mb"] < BUDGET_MB, f"peak RSS {budgeted['peak_mb']} MB over the {BUDGET_MB} MB budget"

    from ladle import FeatureStore
    from ladle.retrieval.online import OnlineRetriever

    store = FeatureStore(
        config={
            "project": "rss",
            "registry": {"path": str(tmp_path / "registry-budgeted.db")},
            "online_store": {"type": "sqlite", "path": str(tmp_path / "online.db")},
            "offline_store": {"type": "duckdb"},
        },
        repo_path=tmp_path,
    )
    try:
        retriever = OnlineRetriever(store.registry, store.online_store, clock=lambda: 1.7e9)
        got = retriever.get_online_features(["v:f0"], {"item_id": ids.tolist()}).values[1]
        assert got == f0.tolist()
    finally:
        store.close()
