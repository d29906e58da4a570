"""W7 on Iceberg: W4 (``get_historical_features`` of 100,000 entity rows over 1,000,000 ticks, 8
features, ttl 30 days) on the Iceberg offline store, and its ratio to the DuckDB (Parquet) store on
the same data.

The W4 ticks are loaded once into an Iceberg table (SQLite catalog, day partitions on the event
time, what ``offline_store: {type: iceberg}`` creates) under ``<data>/iceberg-w7/``; the load is
reused while the ticks file is the same. Then each store runs in a fresh child process (its peak
RSS is its own), ``--repeat`` calls of ``get_historical_features(...).to_df()``, and the last
result of each is checked against W4's pandas reference (``merge_asof`` per entity, backward,
tolerance = ttl, over the source deduplicated on the highest created time).

    .venv/bin/python -m bench.w7_iceberg                      # generates bench/data/ if needed
    .venv/bin/python -m bench.w7_iceberg --repeat 3 --memory-limit 1GB
    .venv/bin/python -m bench.w7_iceberg --read-path arrow   # pyiceberg's Arrow reader instead of DuckDB's

``--read-path arrow`` sets the table property ``schema.name-mapping.default`` for the run (what
makes the store read through pyiceberg, see docs/iceberg.md "Reads") and removes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import Timer, emit, peak_rss_mb, rss_mb, run_child, summarize
from bench.data import DEFAULT_DIR, FEATURES, TickSpec, ensure_entity_df, ensure_ticks
from bench.w4_historical import VIEW, check, w4_store

NAMESPACE = "w7"


def iceberg_block(warehouse_dir: Path, offline: dict[str, Any]) -> dict[str, Any]:
    """The ``offline_store:`` block of the benchmark's Iceberg catalog."""
    return {
        "type": "iceberg",
        "catalog": {
            "type": "sql",
            "uri": f"sqlite:///{warehouse_dir / 'catalog.db'}",
            "warehouse": str(warehouse_dir / "warehouse"),
        },
        "namespace": NAMESPACE,
        **offline,
    }


def ensure_iceberg(data: Path, ticks: Path) -> tuple[Path, float | None]:
    """The W4 ticks in an Iceberg table (loaded once; reloaded when the ticks file changed)."""
    import pyarrow.parquet as pq

    from ladle import FileSource
    from ladle.config import load_config
    from ladle.offline.base import open_offline_store

    directory = data / "iceberg-w7"
    stamp = directory / "loaded.json"
    key = {"ticks": str(ticks), "size": ticks.stat().st_size, "mtime_ns": ticks.stat().st_mtime_ns}
    if stamp.exists() and json.loads(stamp.read_text()) == key:
        return directory, None
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    config = load_config({"project": "w7", "offline_store": iceberg_block(directory, {})}, directory)
    store = open_offline_store(config)
    source = FileSource(name="commodity_ticks", path="unused/", timestamp_field="event_timestamp")
    with Timer() as t:
        store.append(source, pq.read_table(ticks))
    stamp.write_text(json.dumps(key))
    return directory, t.seconds


@contextmanager
def read_path(directory: Path, path: str) -> Iterator[None]:
    """Make the store read the table through pyiceberg's Arrow reader (``arrow``) for the block's duration."""
    if path != "arrow":
        yield
        return
    from pyiceberg.catalog import load_catalog
    from pyiceberg.table.name_mapping import create_mapping_from_schema

    block = iceberg_block(directory, {})["catalog"]
    table = load_catalog("ladle", **{**block, "warehouse": Path(block["warehouse"]).as_uri()}).load_table(
        f"{NAMESPACE}.commodity_ticks"
    )
    with table.transaction() as tx:
        tx.set_properties({"schema.name-mapping.default": create_mapping_from_schema(table.schema()).model_dump_json()})
    try:
        yield
    finally:
        with table.transaction() as tx:
            tx.remove_properties("schema.name-mapping.default")


def child(args: argparse.Namespace) -> None:
    """The measured process (Iceberg store): prints one JSON line."""
    import pyarrow.parquet as pq

    offline: dict[str, Any] = {}
    if args.threads:
        offline["threads"] = args.threads
    if args.memory_limit:
        offline["memory_limit"] = args.memory_limit
    with tempfile.TemporaryDirectory() as tmp:
        store = w4_store(Path(tmp), args.ticks, args.ttl_hours, iceberg_block(args.iceberg, offline), project="w7")
        entity_df = pq.read_table(args.entity_df).to_pandas()
        refs = [f"{VIEW}:{f}" for f in FEATURES]
        store.snapshot()
        rss_before = rss_mb()
        runs: list[float] = []
        cpu: list[float] = []
        result = None
        for _ in range(args.repeat):
            cpu_start = time.process_time()
            with Timer() as t:
                result = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
            runs.append(t.seconds)
            cpu.append(time.process_time() - cpu_start)
        peak = peak_rss_mb()
        paths = dict(store.offline_store.last_read_paths)
        assert result is not None
        result.to_parquet(args.result)
        store.close()
    print(json.dumps({"runs_s": runs, "cpu_s": cpu, "rss_before_mb": rss_before, "peak_rss_mb": peak, "paths": paths}))


def main(argv: list[str] | None = None) -> int:
    """Run W7 on Iceberg and on DuckDB (child processes), check both, print the ratio."""
    parser = argparse.ArgumentParser(description="W7: W4 on the Iceberg offline store, against DuckDB")
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="directory of the data files (made if missing)")
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=100)
    parser.add_argument("--entity-rows", type=int, default=100_000)
    parser.add_argument("--ttl-hours", type=float, default=24 * 30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: all cores)")
    parser.add_argument("--memory-limit", default="", help="DuckDB memory_limit, e.g. 1GB")
    parser.add_argument(
        "--read-path", choices=["auto", "arrow"], default="auto", help="arrow: force pyiceberg's Arrow reader"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--iceberg", type=Path, help=argparse.SUPPRESS)
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
    iceberg, load_s = ensure_iceberg(args.data, ticks)
    common = [
        "--ticks", str(ticks), "--entity-df", str(entity_df), "--repeat", str(args.repeat),
        "--ttl-hours", str(args.ttl_hours), "--threads", str(args.threads), "--memory-limit", args.memory_limit,
    ]  # fmt: skip
    stores: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("duckdb", "iceberg"):
            result = Path(tmp) / f"{name}.parquet"
            if name == "iceberg":
                with read_path(iceberg, args.read_path):
                    measured = run_child(
                        "bench.w7_iceberg", ["--child", "--iceberg", str(iceberg), "--result", str(result), *common]
                    )
            else:
                w4_args = ["--child", "--result", str(result), "--mode", "df", *common]
                measured = run_child("bench.w4_historical", w4_args)
            stores[name] = {
                "cold_s": round(measured["runs_s"][0], 4),
                "wall_s": summarize(measured["runs_s"]),
                "cpu_s": summarize(measured["cpu_s"]),
                "peak_rss_mb": measured["peak_rss_mb"],
                "rss_before_first_call_mb": measured["rss_before_mb"],
                "read_path": measured.get("paths", {}),
                "correctness": check(result, ticks, entity_df, args.ttl_hours),
            }
    ratio = stores["iceberg"]["wall_s"]["median"] / stores["duckdb"]["wall_s"]["median"]
    ok = all(s["correctness"]["ok"] for s in stores.values())
    emit(
        {
            "workload": "W7",
            "what": f"W4 on Iceberg vs DuckDB: get_historical_features(...).to_df(), {len(FEATURES)} features",
            "entity_rows": args.entity_rows,
            "source_rows": spec.rows,
            "iceberg_table": str(iceberg),
            "iceberg_load_s": "reused" if load_s is None else round(load_s, 2),
            "duckdb": {"threads": args.threads or "all", "memory_limit": args.memory_limit or "default"},
            "stores": stores,
            "iceberg_to_duckdb_wall_ratio": round(ratio, 3),
            "correctness_ok": ok,
        }
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
