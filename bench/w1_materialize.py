"""W1: materialize the ticks file into the online store (SQLite or Redis).

* **W1a**: ``commodity_ticks.parquet`` (10,000 entities x 100 hours = 1,000,000 rows), window
  2023-12-31T00:00Z → 2024-01-06T00:00Z: read, keep the newest row of each entity, write 10,000 rows.
* **W1b**: ``commodity_ticks_distinct.parquet`` (1,000,000 entities x 1 row), same window:
  1,000,000 online writes.
* **W6** (materialization at 10x scale): ``commodity_ticks_100000x100_s42.parquet`` (100,000
  entities x 100 hours = 10,000,000 rows, ``bench.data --entities 100000``), same window: read 10M
  rows, write the newest row of each of the 100,000 entities, under the default memory budget.
* **W6's W1b** (``--workload w6b``): ``commodity_ticks_distinct_10000000.parquet`` (10,000,000
  distinct entities x 1 row, generated once, ~1 GB while it is made), same window: 10,000,000 online
  writes (~2 GB in Redis).

Each run is a fresh child process (its own peak RSS) with a throw-away SQLite registry and, for
``--backend sqlite``, a fresh online database; for ``--backend redis`` / ``redis_cluster`` a fresh project on the server
(torn down afterwards). ``apply`` is not timed; ``store.materialize(start, end)`` is. After the timer,
``--verify`` entities (default 2,000, random) are read back and compared with the source's newest row
of each; on Redis, ``server_cpu_s`` is the server's CPU (``INFO cpu``; a cluster's nodes summed) during the timed call.
``--engine ray`` materializes with ``batch_engine: ray`` on a local Ray of ``--ray-cpus`` CPUs
(started before the clock), one task per CPU unless ``--partitions``; the result lists the median
run's tasks (rows, seconds, worker, its peak RSS) and the peak RSS of the driver plus its workers.

    .venv/bin/python -m bench.w1_materialize                          # W1a and W1b on SQLite
    .venv/bin/python -m bench.w1_materialize --workload w1a --repeat 5
    .venv/bin/python -m bench.w1_materialize --backend redis --redis 127.0.0.1:6379
    .venv/bin/python -m bench.w1_materialize --backend redis_cluster --workload w1b  # starts a 3-master cluster
    .venv/bin/python -m bench.w1_materialize --data /path/to/dir      # the files Feast reads
    .venv/bin/python -m bench.w1_materialize --workload w6 --backend redis   # 10,000,000 source rows
    .venv/bin/python -m bench.w1_materialize --workload w6 --backend redis --memory-budget 1GB --engine ray
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Timer, emit, median, peak_rss_mb, redis_cpu_s, redis_servers, run_child
from bench.data import DEFAULT_DIR, FEATURES, TickSpec, ensure_distinct_ticks, ensure_ticks

VIEW = "commodity_price_features"
START = datetime(2023, 12, 31, tzinfo=UTC)
END = datetime(2024, 1, 6, tzinfo=UTC)


def build_store(
    repo: Path, ticks: Path, backend: str, redis: str, project: str, memory_budget: str = "", engine: Any = "local"
) -> Any:
    """A store with the W1 view applied (SQLite registry in ``repo``); ``memory_budget`` '' keeps the
    default; ``engine`` is the ``batch_engine`` block."""
    from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, ValueType

    online: dict[str, Any] = {"type": "sqlite", "path": str(repo / "online.db")}
    if backend in ("redis", "redis_cluster"):
        online = {"type": "redis", "connection_string": redis, "redis_type": backend}
    store = FeatureStore(
        config={
            "project": project,
            "registry": {"path": str(repo / "registry.db"), "cache_ttl_seconds": 600},
            "online_store": online,
            "offline_store": {"type": "duckdb"},
            **({"materialization": {"memory_budget": memory_budget}} if memory_budget else {}),
            "batch_engine": engine,
        },
        repo_path=repo,
    )
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    source = FileSource(
        name="commodity_ticks", path=str(ticks), timestamp_field="event_timestamp", created_timestamp_column="created"
    )
    view = FeatureView(
        name=VIEW,
        entities=[commodity],
        ttl=timedelta(days=30),
        schema=[Field(name=f, dtype=Float64) for f in FEATURES],
        source=source,
    )
    store.apply([commodity, source, view])
    return store


def child(args: argparse.Namespace) -> None:
    """One measured run: prints one JSON line."""
    import pyarrow.parquet as pq

    # W1 times the work, not imports: load the materializer first, as a server or a scheduler has it.
    importlib.import_module("ladle.materialize.local")
    source_rows = pq.ParquetFile(args.ticks).metadata.num_rows
    project = f"w1_{uuid.uuid4().hex[:8]}"
    engine: Any = "local"
    if args.engine == "ray":
        engine = {"type": "ray", "num_cpus": args.ray_cpus, "partitions": args.partitions or args.ray_cpus}
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp), args.ticks, args.backend, args.redis, project, args.memory_budget, engine)
        store.online_store.ping()
        made = _keep_materializers(store)
        try:
            ray_start = None
            if args.engine == "ray":  # start Ray before the clock: a long-running cluster is the point of it
                with Timer() as started:
                    store._ray.connect()
                ray_start = round(started.seconds, 3)
            cpu_before = server_cpu(args)
            with Timer() as t:
                (result,) = store.materialize(START, END, [VIEW])
            cpu = server_cpu(args) - cpu_before
            peak = peak_rss_mb()  # before the check, which reads the source again
            tasks = [
                {"part": str(r.part), "rows_read": r.rows_read, "rows_written": r.rows_written,
                 "seconds": round(r.seconds, 3), "pid": r.pid, "peak_rss_mb": r.peak_rss_mb}
                for m in made for r in getattr(m, "reports", [])
            ]  # fmt: skip
            mismatches = verify(store, args.ticks, args.verify)
        finally:
            if args.backend != "sqlite":
                store.online_store.teardown(project, [])
            store.close()
    emit(
        {
            "wall_s": round(t.seconds, 3),
            "source_rows": source_rows,
            "source_rows_per_s": round(source_rows / t.seconds),
            "rows_written": result.rows_written,
            "written_rows_per_s": round(result.rows_written / t.seconds),
            "peak_rss_mb": peak,
            **({"server_cpu_s": round(cpu, 3)} if args.backend in REDIS else {}),
            **({"ray_start_s": ray_start, "tasks": tasks} if args.engine == "ray" else {}),
            "verified": args.verify,
            "mismatches": mismatches,
        },
        machine=False,
    )
    if mismatches:
        raise SystemExit(f"{mismatches} of {args.verify} entities read back differ from the source")


REDIS = ("redis", "redis_cluster")


def _keep_materializers(store: Any) -> list[Any]:
    """Every materializer ``store`` makes from now on (the Ray one keeps its tasks' reports)."""
    made: list[Any] = []
    make = store._materializer

    def keeping() -> Any:
        made.append(make())
        return made[-1]

    store._materializer = keeping
    return made


def server_cpu(args: argparse.Namespace) -> float:
    """CPU seconds (user + sys) the Redis server(s) have used so far (every node of a cluster, summed);
    0 for other backends."""
    return redis_cpu_s(redis_servers(args.backend, args.redis)) if args.backend in REDIS else 0.0


def verify(store: Any, ticks: Path, count: int) -> int:
    """Read ``count`` random entities back; how many differ from the source's newest row in the window."""
    if count <= 0:
        return 0
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ladle.online.base import ReadRequest

    table = pq.read_table(ticks, columns=["commodity_code", "event_timestamp", "created", *FEATURES])
    ts = table["event_timestamp"]
    table = table.filter(pc.and_(pc.greater_equal(ts, pa.scalar(START)), pc.less_equal(ts, pa.scalar(END))))
    codes = pc.unique(table["commodity_code"]).to_pylist()
    sample = sorted(np.random.default_rng(7).choice(len(codes), size=min(count, len(codes)), replace=False))
    wanted = [codes[i] for i in sample]
    rows = table.filter(pc.is_in(table["commodity_code"], pa.array(wanted))).to_pylist()
    newest: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["event_timestamp"], r["created"])):
        newest[row["commodity_code"]] = row
    view = store.get_feature_view(VIEW)
    (got,) = store.online_store.read(store.project, [ReadRequest(view, list(FEATURES), {"commodity_code": wanted})])
    return sum(any(got.values[f][i] != newest[code][f] for f in FEATURES) for i, code in enumerate(wanted))


def parent(args: argparse.Namespace) -> None:
    """Generate/reuse the files, run each workload ``--repeat`` times in children, report medians."""
    if args.backend == "redis_cluster" and not args.redis_nodes:
        from bench.cluster import local_cluster

        with local_cluster() as nodes:
            args.redis_nodes = nodes
            parent(args)
        return
    files = {}
    if args.workload in ("w1a", "both"):
        files["W1a"] = ensure_ticks(args.data)
    if args.workload in ("w1b", "both"):
        files["W1b"] = ensure_distinct_ticks(args.data)
    if args.workload == "w6":
        files["W6"] = ensure_ticks(args.data, TickSpec(entities=100_000))
    if args.workload == "w6b":
        files["W6-W1b"] = ensure_distinct_ticks(args.data, 10_000_000)
    for name, path in files.items():
        address = args.redis_nodes if args.backend == "redis_cluster" else args.redis
        child_args = ["--child", "--ticks", str(path), "--backend", args.backend, "--redis", address]
        child_args += ["--memory-budget", args.memory_budget] if args.memory_budget else []
        child_args += ["--verify", str(args.verify), "--engine", args.engine]
        child_args += ["--ray-cpus", str(args.ray_cpus), "--partitions", str(args.partitions)]
        runs = [run_child("bench.w1_materialize", child_args) for _ in range(args.repeat)]
        walls = [r["wall_s"] for r in runs]
        best = min(runs, key=lambda r: abs(r["wall_s"] - median(walls)))
        emit(
            {
                "workload": name,
                "backend": args.backend,
                "file": str(path),
                "runs": args.repeat,
                "memory_budget": args.memory_budget or "default",
                "wall_s_median": round(median(walls), 3),
                "wall_s_all": walls,
                "source_rows": best["source_rows"],
                "source_rows_per_s": round(best["source_rows"] / median(walls)),
                "rows_written": best["rows_written"],
                "written_rows_per_s": round(best["rows_written"] / median(walls)),
                "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
                **(_ray_summary(runs, best) if args.engine == "ray" else {}),
                **({"server_cpu_s_all": [r["server_cpu_s"] for r in runs]} if args.backend in REDIS else {}),
                "verified_per_run": args.verify,
                "mismatches": sum(r["mismatches"] for r in runs),
            }
        )


def _ray_summary(runs: list[dict[str, Any]], best: dict[str, Any]) -> dict[str, Any]:
    """Ray's part of a result: the median run's tasks, and peak RSS counting the workers'."""
    workers = [{t["pid"]: t["peak_rss_mb"] for t in r["tasks"]} for r in runs]
    return {
        "engine": "ray",
        "ray_start_s_all": [r["ray_start_s"] for r in runs],
        "tasks": best["tasks"],
        "workers_peak_rss_mb_max": max((mb for w in workers for mb in w.values()), default=0.0),
        "all_peak_rss_mb_max": max(r["peak_rss_mb"] + sum(w.values()) for r, w in zip(runs, workers, strict=True)),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="directory of the Parquet files")
    parser.add_argument("--workload", choices=["w1a", "w1b", "both", "w6", "w6b"], default="both")
    parser.add_argument("--backend", choices=["sqlite", "redis", "redis_cluster"], default="sqlite")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="Redis host:port for --backend redis")
    parser.add_argument(
        "--redis-nodes", default="", help="startup nodes for --backend redis_cluster (default: start a local cluster)"
    )
    parser.add_argument("--memory-budget", default="", help="materialization.memory_budget (default: the config's)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload (median reported)")
    parser.add_argument(
        "--verify", type=int, default=2000, help="entities read back and checked after each run (0: none)"
    )
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="batch_engine")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray (--engine ray)")
    parser.add_argument("--partitions", type=int, default=0, help="Ray tasks per view (default: --ray-cpus)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
    else:
        parent(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
