"""W6: historical retrieval at 10x scale (10,000,000 source rows, 1,000,000 entity rows), local and on Ray.

Each engine runs in a fresh child process (its peak RSS is its own): the ``commodity_price_features``
view of W4 over ``bench.data --entities 100000``, ``materialization.memory_budget`` = ``--budget``,
``get_historical_features(...).to_df()`` (or ``--mode parquet``) ``--repeat`` times.

* ``local``: the local engine (partitioned retrieval when the sources exceed the budget).
* ``ray``: ``batch_engine: ray`` with a local Ray of ``--ray-cpus`` CPUs (2 workers here); the peak RSS
  reported is the driver's VmHWM plus each worker process's VmHWM (read in the tasks), and the task
  durations show how the time splits across workers. Ray's own daemons (raylet, GCS, object store)
  are not included; their resident size at the end is reported apart.

Correctness: the last result is compared with pandas ``merge_asof`` (W4's reference) on a sample of
``--check-rows`` entity rows (the full reference over 10,000,000 rows needs several GB).

    .venv/bin/python -m bench.data --out bench/data --entities 100000 --entity-rows 1000000
    .venv/bin/python -m bench.w6_scale --engine local --budget 1GB
    .venv/bin/python -m bench.w6_scale --engine ray --budget 1GB --ray-cpus 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import emit, peak_rss_mb, rss_mb, run_child, summarize
from bench.data import DEFAULT_DIR, FEATURES, TickSpec, ensure_entity_df, ensure_ticks
from bench.w4_historical import VIEW, expected_frame, w4_store


def _store(repo: Path, ticks: Path, args: argparse.Namespace) -> Any:
    engine: Any = "local"
    if args.engine == "ray":
        engine = {"type": "ray", "num_cpus": args.ray_cpus, "object_store_memory": args.object_store,
                  "partitions": args.partitions or args.ray_cpus}  # fmt: skip
    extra = {"materialization": {"memory_budget": args.budget}, "batch_engine": engine}
    return w4_store(repo, ticks, args.ttl_hours, {"type": "duckdb"}, project="w6", extra_config=extra)


def _ray_daemons_mb() -> float:
    """Resident MB of this process's child processes that are not Ray workers (raylet, GCS, ...)."""
    total = 0.0
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            if fields[1] != me or "default_worker" in cmd:
                continue
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            total += rss / 1024
        except (OSError, StopIteration, IndexError):
            continue
    return round(total, 1)


def child(args: argparse.Namespace) -> None:
    """The measured process: prints one JSON line."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        store = _store(Path(tmp), args.ticks, args)
        entity_df = pq.read_table(args.entity_df).to_pandas()
        refs = [f"{VIEW}:{f}" for f in FEATURES]
        store.snapshot()
        started = None
        if args.engine == "ray":  # start Ray before the clock: a long-running cluster is the point of it
            began = time.perf_counter()
            store._ray.connect()
            started = round(time.perf_counter() - began, 3)
        rss_before = rss_mb()
        runs: list[float] = []
        tasks: list[dict[str, Any]] = []
        job = None
        result: Any = None
        for _ in range(args.repeat):
            # one retrieval at a time: the previous result (~150 MB as pandas) is not held through the next
            job = result = None
            began = time.perf_counter()
            job = store.get_historical_features(entity_df=entity_df, features=refs)
            if args.mode == "df":
                result = job.to_df()
            else:
                job.to_parquet(args.result)
            runs.append(time.perf_counter() - began)
            reports = getattr(job, "reports", None)
            if reports:
                tasks = [{"part": r.part, "rows": r.rows, "seconds": round(r.seconds, 3), "pid": r.pid,
                          "peak_rss_mb": r.peak_rss_mb} for r in reports]  # fmt: skip
        peak = peak_rss_mb()
        if args.mode == "df":
            result.to_parquet(args.result)
        workers = {t["pid"]: t["peak_rss_mb"] for t in tasks}
        out = {
            "runs_s": [round(r, 3) for r in runs],
            "rss_before_mb": rss_before,
            "driver_peak_rss_mb": peak,
            "workers_peak_rss_mb": workers,
            "all_peak_rss_mb": round(peak + sum(workers.values()), 1),
            "ray_daemons_rss_mb": _ray_daemons_mb() if args.engine == "ray" else 0,
            "ray_start_s": started,
            "tasks": tasks,
            "job": repr(job),
        }
        store.close()
    print(json.dumps(out))


def check_sample(result_path: Path, ticks: Path, entity_df: Path, ttl_hours: float, rows: int) -> dict[str, Any]:
    """Ladle's result against pandas merge_asof on ``rows`` random entity rows (and their entities' ticks)."""
    import pandas as pd
    import pyarrow.parquet as pq

    got = pd.read_parquet(result_path)
    frame = pd.read_parquet(entity_df)
    problems = []
    if len(got) != len(frame) or not np.array_equal(got["req_id"].to_numpy(), frame["req_id"].to_numpy()):
        problems.append("row order differs from the entity frame")
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(frame), size=min(rows, len(frame)), replace=False))
    sub = frame.iloc[sample]
    codes = sorted(set(sub["commodity_code"]))
    with tempfile.TemporaryDirectory() as tmp:
        ticks_sub = Path(tmp) / "ticks.parquet"
        table = pq.read_table(ticks, filters=[("commodity_code", "in", codes)])
        pq.write_table(table, ticks_sub)
        ent_sub = Path(tmp) / "entity.parquet"
        sub.to_parquet(ent_sub, index=False)
        want = expected_frame(ticks_sub, ent_sub, ttl_hours)
    mine = got.iloc[sample].reset_index(drop=True)
    bad = np.zeros(len(want), dtype=bool)
    for name in FEATURES:
        a, b = mine[name].to_numpy(dtype=float), want[name].to_numpy(dtype=float)
        bad |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return {
        "ok": not problems and not bad.any(),
        "rows_checked": len(want),
        "rows_with_values": int(want[FEATURES[0]].notna().sum()),
        "mismatched_rows": int(bad.sum()),
        "problems": problems,
        "reference": "pandas merge_asof (W4's) on a random sample of entity rows and all ticks of their entities",
    }


def main(argv: list[str] | None = None) -> int:
    """Run W6 retrieval on one engine (child process), then check a sample."""
    parser = argparse.ArgumentParser(description="W6 historical retrieval at 10x, local or Ray")
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--entity-rows", type=int, default=1_000_000)
    parser.add_argument("--ttl-hours", type=float, default=24 * 30)
    parser.add_argument("--budget", default="1GB", help="materialization.memory_budget")
    parser.add_argument("--mode", choices=["df", "parquet"], default="df")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--object-store", default="300MB")
    parser.add_argument("--partitions", type=int, default=0, help="Ray tasks (default: --ray-cpus)")
    parser.add_argument("--check-rows", type=int, default=20_000)
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entity-df", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    spec = TickSpec(args.entities, 100)
    ticks = ensure_ticks(args.data, spec)
    entity_df = ensure_entity_df(args.data, spec, args.entity_rows)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.parquet"
        child_args = [
            "--child", "--engine", args.engine, "--ticks", str(ticks), "--entity-df", str(entity_df),
            "--result", str(result), "--budget", args.budget, "--mode", args.mode, "--repeat", str(args.repeat),
            "--ray-cpus", str(args.ray_cpus), "--object-store", args.object_store,
            "--partitions", str(args.partitions), "--ttl-hours", str(args.ttl_hours),
        ]  # fmt: skip
        measured = run_child("bench.w6_scale", child_args)
        correctness = (
            {"skipped": True}
            if args.no_check
            else check_sample(result, ticks, entity_df, args.ttl_hours, args.check_rows)
        )
    emit(
        {
            "workload": "W6 retrieval",
            "engine": args.engine,
            "what": f"get_historical_features(...).to_{args.mode}(), 8 features, budget {args.budget}",
            "entity_rows": args.entity_rows,
            "source_rows": spec.rows,
            "wall_s": summarize(measured["runs_s"]),
            **{k: v for k, v in measured.items() if k != "runs_s"},
            "correctness": correctness,
        }
    )
    return 0 if args.no_check or correctness["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
