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
long-running server would: without it, p99 includes Python's full garbage collections. ``--pin 1:0``
times with this process on CPU 1 and every Redis server of the run on CPU 0 (:mod:`bench.pin`).

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
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import CpuMeter, emit, percentile, redis_servers
from bench.data import DEFAULT_DIR, FEATURES, ensure_ticks, entity_codes
from bench.pin import parse_pin, pinned
from bench.w1_materialize import END, START, VIEW, build_store

CLOCK = datetime(2024, 1, 6, tzinfo=UTC).timestamp()
W2A_FEATURES = ["current_price", "price_change_1h", "volume_24h"]
W2A_REFS = [f"{VIEW}:{f}" for f in W2A_FEATURES]
W2B_REFS = [f"{VIEW}:{f}" for f in FEATURES]


def settle_gc(freeze: bool) -> None:
    """Before the clock: a full collection, then with ``freeze`` what a long-running server does after
    start-up, ``gc.freeze()`` (old objects leave the GC's scans)."""
    gc.collect()
    if freeze:
        gc.freeze()


def draw_rows(rng: random.Random, codes: Sequence[str], n: int, form: str) -> Any:
    """``n`` random entities of ``codes`` as entity rows: a list of dicts (``records``) or a dict of columns."""
    picked = [rng.choice(codes) for _ in range(n)]
    return [{"commodity_code": c} for c in picked] if form == "records" else {"commodity_code": picked}


def prepared_store(repo: Path, ticks: Path, backend: str, redis: str, project: str, rng: random.Random) -> Any:
    """The W1 store in ``repo`` with the view materialized and the retriever's clock pinned inside the
    data's ttl window (see the module docstring); checks that every value of 100 entities drawn with
    ``rng`` is PRESENT. Release it with :func:`release_store`."""
    from ladle.retrieval.online import OnlineRetriever

    store = build_store(repo, ticks, backend, redis, project)
    try:
        store.materialize(START, END, [VIEW])
        # The public path, with the clock pinned inside the data's ttl window (see the docstring).
        store.__dict__["_online"] = OnlineRetriever(store.registry, store.online_store, clock=lambda: CLOCK)
        codes = entity_codes(10_000).to_pylist()
        check = store.get_online_features(W2B_REFS, draw_rows(rng, codes, 100, "records"))
        assert all(s == 1 for col in check.statuses for s in col), "setup: every value should be PRESENT"
    except BaseException:
        release_store(store, backend, project)
        raise
    return store


def release_store(store: Any, backend: str, project: str) -> None:
    """Tear down the project's online data (Redis) and close ``store``."""
    try:
        if backend != "sqlite":
            store.online_store.teardown(project, [])
    finally:
        store.close()


def _latencies(
    call: Any, requests: list[Any], warmup: int, freeze: bool, servers: Sequence[tuple[str, int]]
) -> tuple[list[float], dict[str, float | None]]:
    """Each timed call's latency in µs, and the CPU per call of this process and of ``servers``."""
    for req in requests[:warmup]:
        call(req)
    out = []
    perf = time.perf_counter_ns
    settle_gc(freeze)
    with CpuMeter(servers) as cpu:
        for req in requests[warmup:]:
            started = perf()
            call(req)
            out.append((perf() - started) / 1000)
    return out, cpu.per_call(len(out))


def _summary(name: str, lat: list[float], cpu: dict[str, float | None], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "workload": name,
        "backend": args.backend,
        "entity_rows": args.form,
        "gc_freeze": args.gc_freeze,
        "calls": len(lat),
        "p50_us": round(percentile(lat, 50), 1),
        "p99_us": round(percentile(lat, 99), 1),
        "mean_us": round(statistics.fmean(lat), 1),
        "cpu_per_call": cpu,
    }


def run(args: argparse.Namespace) -> None:
    """Set up, then time both workloads; prints one JSON line each."""
    ticks = ensure_ticks(args.data)
    codes = entity_codes(10_000).to_pylist()
    project = f"w2_{uuid.uuid4().hex[:8]}"
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        store = prepared_store(Path(tmp), ticks, args.backend, args.redis, project, rng)
        try:
            total = args.warmup + args.calls
            requests_a = [draw_rows(rng, codes, 1, args.form) for _ in range(total)]
            requests_b = [draw_rows(rng, codes, 100, args.form) for _ in range(total)]
            freeze, servers = args.gc_freeze, redis_servers(args.backend, args.redis)
            with pinned(args.pin, servers) as pins:
                lat_a, cpu_a = _latencies(
                    lambda r: store.get_online_features(W2A_REFS, r), requests_a, args.warmup, freeze, servers
                )
                lat_b, cpu_b = _latencies(
                    lambda r: store.get_online_features(W2B_REFS, r), requests_b, args.warmup, freeze, servers
                )
        finally:
            release_store(store, args.backend, project)
    emit({**_summary("W2a", lat_a, cpu_a, args), "pinned": pins})
    emit({**_summary("W2b", lat_b, cpu_b, args), "pinned": pins})


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
    parser.add_argument(
        "--pin", type=parse_pin, default=None, help="CLIENT:SERVERS CPUs while timing, e.g. 1:0 (bench/pin.py)"
    )
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
