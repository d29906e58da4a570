"""W4: ``get_historical_features`` for 100,000 entity rows against the 1,000,000-row ticks file.

The timed part runs in a fresh child process (so its peak RSS is its own): it applies the
``commodity_price_features`` view (ttl 30 days, 8 features) to a throw-away SQLite registry,
loads ``entity_df.parquet`` into pandas, then calls ``store.get_historical_features(...).to_df()``
``--repeat`` times. The parent then checks the last result against an independent pandas
computation: ``merge_asof`` per entity (backward, tolerance = ttl) over the source deduplicated
on (entity, event time) keeping the highest created time.

    .venv/bin/python -m bench.w4_historical                      # generates bench/data/ if needed
    .venv/bin/python -m bench.w4_historical --data /path/to/dir  # reuse the files Feast reads
    .venv/bin/python -m bench.w4_historical --entities 100000 --entity-rows 1000000   # W6 scale
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Timer, emit, peak_rss_mb, rss_mb, run_child, summarize
from bench.data import DEFAULT_DIR, FEATURES, TickSpec, ensure_entity_df, ensure_ticks

VIEW = "commodity_price_features"


def w4_store(
    repo: Path,
    ticks: Path | str,
    ttl_hours: float,
    offline_block: dict[str, Any],
    *,
    project: str = "w4",
    source_name: str = "commodity_ticks",
    extra_config: dict[str, Any] | None = None,
) -> Any:
    """A FeatureStore in ``repo`` with W4's view (8 features, ttl ``ttl_hours``) over the ticks, applied.

    ``offline_block`` is the ``offline_store:`` block; W6 and W7 pass their own (Iceberg, MySQL,
    a memory budget or a batch engine through ``extra_config``).
    """
    from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, ValueType

    store = FeatureStore(
        config={
            "project": project,
            "registry": {"path": str(repo / "registry.db"), "cache_ttl_seconds": 600},
            "online_store": {"type": "sqlite", "path": str(repo / "online.db")},
            "offline_store": offline_block,
            **(extra_config or {}),
        },
        repo_path=repo,
    )
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    source = FileSource(
        name=source_name,
        path=str(ticks),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    view = FeatureView(
        name=VIEW,
        entities=[commodity],
        ttl=timedelta(hours=ttl_hours),
        schema=[Field(name=f, dtype=Float64) for f in FEATURES],
        source=source,
    )
    store.apply([commodity, source, view])
    return store


def child(args: argparse.Namespace) -> None:
    """The measured process: prints one JSON line."""
    import pyarrow.parquet as pq

    offline: dict[str, Any] = {}
    if args.threads:
        offline["threads"] = args.threads
    if args.memory_limit:
        offline["memory_limit"] = args.memory_limit
    with tempfile.TemporaryDirectory() as tmp:
        store = w4_store(Path(tmp), args.ticks, args.ttl_hours, {"type": "duckdb", **offline})
        entity_df = pq.read_table(args.entity_df).to_pandas()
        refs = [f"{VIEW}:{f}" for f in FEATURES]
        store.snapshot()  # registry load is not part of the retrieval
        rss_before = rss_mb()
        runs: list[float] = []
        cpu: list[float] = []
        result = None
        for _ in range(args.repeat):
            cpu_start = time.process_time()
            with Timer() as t:
                job = store.get_historical_features(entity_df=entity_df, features=refs)
                if args.mode == "df":
                    result = job.to_df()
                elif args.mode == "arrow":
                    result = job.to_arrow()
                else:
                    job.to_parquet(args.result)
            runs.append(t.seconds)
            cpu.append(time.process_time() - cpu_start)
        peak = peak_rss_mb()
        if result is not None:
            result.to_parquet(args.result) if args.mode == "df" else pq.write_table(result, args.result)
        store.close()
    out = {
        "runs_s": [round(r, 4) for r in runs],
        "cpu_s": [round(c, 4) for c in cpu],
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
    }
    print(json.dumps(out))


def expected_frame(ticks: Path, entity_df: Path, ttl_hours: float) -> Any:
    """The point-in-time answer computed with pandas only (no Ladle, no DuckDB)."""
    import pandas as pd

    source = pd.read_parquet(ticks, columns=["commodity_code", "event_timestamp", "created", *FEATURES])
    # Highest created time wins a tie on (entity, event time); NULL created sorts first, so it loses.
    source = source.sort_values(["event_timestamp", "created"], na_position="first", kind="stable")
    source = source.drop_duplicates(["commodity_code", "event_timestamp"], keep="last")
    entities = pd.read_parquet(entity_df)
    entities["__pos"] = np.arange(len(entities))
    merged = pd.merge_asof(
        entities.sort_values("event_timestamp", kind="stable"),
        source,
        on="event_timestamp",
        by="commodity_code",
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(hours=ttl_hours) if ttl_hours > 0 else None,
    )
    return merged.sort_values("__pos").reset_index(drop=True)


def check(result_path: Path, ticks: Path, entity_df: Path, ttl_hours: float) -> dict[str, Any]:
    """Compare Ladle's result with :func:`expected_frame`: order, columns and every feature value."""
    import pandas as pd

    got = pd.read_parquet(result_path)
    want = expected_frame(ticks, entity_df, ttl_hours)
    entity_cols = list(pd.read_parquet(entity_df).columns)
    problems: list[str] = []
    if list(got.columns) != [*entity_cols, *FEATURES]:
        problems.append(f"columns {list(got.columns)}")
    if len(got) != len(want) or not np.array_equal(got["req_id"].to_numpy(), want["req_id"].to_numpy()):
        problems.append("row order differs from the entity frame")
    bad_rows = np.zeros(len(want), dtype=bool)
    for name in FEATURES:
        a, b = got[name].to_numpy(dtype=float), want[name].to_numpy(dtype=float)
        bad_rows |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    matched = int(want[FEATURES[0]].notna().sum())
    return {
        "ok": not problems and not bad_rows.any(),
        "rows_checked": len(want),
        "rows_with_values": matched,
        "mismatched_rows": int(bad_rows.sum()),
        "problems": problems,
        "reference": "pandas merge_asof(by=commodity_code, backward, tolerance=ttl) on created-deduplicated source",
    }


def main(argv: list[str] | None = None) -> int:
    """Run W4 (child process for timing and RSS, correctness check in the parent)."""
    parser = argparse.ArgumentParser(description="W4 historical retrieval benchmark")
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="directory of the data files (made if missing)")
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=100)
    parser.add_argument("--entity-rows", type=int, default=100_000)
    parser.add_argument("--ttl-hours", type=float, default=24 * 30, help="view ttl (W4: 30 days)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--mode", choices=["df", "arrow", "parquet"], default="df", help="job.to_df / to_arrow / to_parquet"
    )
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: all cores)")
    parser.add_argument("--memory-limit", default="", help="DuckDB memory_limit, e.g. 1GB")
    parser.add_argument("--no-check", action="store_true", help="skip the pandas correctness check")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entity-df", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    spec = TickSpec(args.entities, args.hours)
    ticks = ensure_ticks(args.data, spec)
    entity_df = ensure_entity_df(args.data, spec, args.entity_rows)
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.parquet"
        child_args = [
            "--child", "--ticks", str(ticks), "--entity-df", str(entity_df), "--result", str(result_path),
            "--repeat", str(args.repeat), "--mode", args.mode, "--ttl-hours", str(args.ttl_hours),
            "--threads", str(args.threads), "--memory-limit", args.memory_limit,
        ]  # fmt: skip
        measured = run_child("bench.w4_historical", child_args)
        correctness = {"skipped": True} if args.no_check else check(result_path, ticks, entity_df, args.ttl_hours)
    runs = measured["runs_s"]
    emit(
        {
            "workload": "W4",
            "engine": "ladle",
            "what": f"get_historical_features(...).to_{args.mode}(), {len(FEATURES)} features, ttl {args.ttl_hours} h",
            "entity_rows": args.entity_rows,
            "source_rows": spec.rows,
            "files": {"ticks": str(ticks), "entity_df": str(entity_df)},
            "cold_s": runs[0],
            "wall_s": summarize(runs),
            # CPU seconds of the process (all threads) per call: less sensitive to other jobs.
            "cpu_s": summarize(measured["cpu_s"]),
            "peak_rss_mb": measured["peak_rss_mb"],
            "rss_before_first_call_mb": measured["rss_before_mb"],
            "duckdb": {"threads": args.threads or "all", "memory_limit": args.memory_limit or "default"},
            "correctness": correctness,
        }
    )
    return 0 if args.no_check or correctness["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
