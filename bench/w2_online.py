"""W2: in-process ``get_online_features`` latency (SQLite or Redis online store).

* **W2a**: 1 entity x 3 features (``current_price, price_change_1h, volume_24h``)
* **W2b**: 100 entities x all 8 features

Setup (not timed): a throw-away repo with the W1 view (``commodity_price_features``, ttl 30 days),
materialized from ``commodity_ticks.parquet`` (10,000 entities). The view's ttl is measured from
"now", and the data is from 2024, so the retriever gets a clock at 2024-01-06 to keep values
PRESENT (the ttl check still runs on every call). Then each workload does ``--warmup`` calls and
``--calls`` timed calls (2,000 by default) with random entities (fixed seed), through the public
``FeatureStore.get_online_features`` with entity rows as a list of dicts (Feast's usual form; ``--form
columns`` passes a dict of columns instead). ``--gc-freeze`` calls ``gc.freeze()`` after set-up, as a
long-running server would: without it, p99 includes Python's full garbage collections.

    .venv/bin/python -m bench.w2_online                       # SQLite
    .venv/bin/python -m bench.w2_online --backend redis --redis 127.0.0.1:6379
    .venv/bin/python -m bench.w2_online --backend redis_cluster       # starts a 3-master cluster
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import emit, percentile
from bench.data import DEFAULT_DIR, FEATURES, ensure_ticks, entity_codes
from bench.w1_materialize import END, START, VIEW, build_store

CLOCK = datetime(2024, 1, 6, tzinfo=UTC).timestamp()
W2A_FEATURES = ["current_price", "price_change_1h", "volume_24h"]


def _latencies(call: Any, requests: list[Any], warmup: int, freeze: bool) -> list[float]:
    for req in requests[:warmup]:
        call(req)
    out = []
    perf = time.perf_counter_ns
    gc.collect()
    if freeze:
        gc.freeze()  # what a long-running server does after start-up: old objects leave the GC's scans
    for req in requests[warmup:]:
        started = perf()
        call(req)
        out.append((perf() - started) / 1000)
    return out


def _summary(name: str, lat: list[float], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "workload": name,
        "backend": args.backend,
        "entity_rows": args.form,
        "gc_freeze": args.gc_freeze,
        "calls": len(lat),
        "p50_us": round(percentile(lat, 50), 1),
        "p99_us": round(percentile(lat, 99), 1),
        "mean_us": round(statistics.fmean(lat), 1),
    }


def run(args: argparse.Namespace) -> None:
    """Set up, then time both workloads; prints one JSON line each."""
    from ladle.retrieval.online import OnlineRetriever

    ticks = ensure_ticks(args.data)
    codes = entity_codes(10_000).to_pylist()
    project = f"w2_{uuid.uuid4().hex[:8]}"
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp), ticks, args.backend, args.redis, project)
        try:
            store.materialize(START, END, [VIEW])
            # The public path, with the clock pinned inside the data's ttl window (see the docstring).
            store.__dict__["_online"] = OnlineRetriever(store.registry, store.online_store, clock=lambda: CLOCK)
            total = args.warmup + args.calls

            def rows(n: int) -> Any:
                picked = [rng.choice(codes) for _ in range(n)]
                return [{"commodity_code": c} for c in picked] if args.form == "records" else {"commodity_code": picked}

            refs_a = [f"{VIEW}:{f}" for f in W2A_FEATURES]
            refs_b = [f"{VIEW}:{f}" for f in FEATURES]
            check = store.get_online_features(refs_b, rows(100))
            assert all(s == 1 for col in check.statuses for s in col), "setup: every value should be PRESENT"
            requests_a = [rows(1) for _ in range(total)]
            requests_b = [rows(100) for _ in range(total)]
            freeze = args.gc_freeze
            lat_a = _latencies(lambda r: store.get_online_features(refs_a, r), requests_a, args.warmup, freeze)
            lat_b = _latencies(lambda r: store.get_online_features(refs_b, r), requests_b, args.warmup, freeze)
        finally:
            if args.backend != "sqlite":
                store.online_store.teardown(project, [])
            store.close()
    emit(_summary("W2a", lat_a, args))
    emit(_summary("W2b", lat_b, args))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="directory of the Parquet files")
    parser.add_argument("--backend", choices=["sqlite", "redis", "redis_cluster"], default="sqlite")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="Redis host:port for --backend redis")
    parser.add_argument(
        "--redis-nodes", default="", help="startup nodes for --backend redis_cluster (default: start a local cluster)"
    )
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--form", choices=["records", "columns"], default="records")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after set-up, as a server would")
    args = parser.parse_args(argv)
    if args.backend == "redis_cluster":
        if args.redis_nodes:
            args.redis = args.redis_nodes
            run(args)
            return 0
        from bench.cluster import local_cluster

        with local_cluster() as nodes:
            args.redis = nodes
            run(args)
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
