"""Where a Redis read's time goes: wall time vs the client's CPU, one server vs a local cluster.

Writes ``--entities`` rows of one 8-float64 view, then times ``RedisOnlineStore.read`` of
``--batch`` random entities (W2b's shape, below the retrieval layer) ``--calls`` times per round,
alternating single / cluster for ``--rounds`` rounds. Per backend it reports the wall-time p50 / p99
and the client's CPU per read (user and system, ``os.times`` around the timed calls, divided by the calls):
wall minus CPU is time spent waiting on the servers (and, on a shared machine, for a core).

    .venv/bin/python -m bench.redis_reads                        # starts a local 3-master cluster
    .venv/bin/python -m bench.redis_reads --batch 1
    strace -f -c -o calls.txt .venv/bin/python -m bench.redis_reads --only redis_cluster   # system calls
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from bench.common import emit, percentile

FEATURES = [f"f{i}" for i in range(8)]


def _store(kind: str, nodes: str) -> Any:
    from ladle.config import load_config
    from ladle.online.redis.store import RedisOnlineStore

    block = {"type": "redis", "connection_string": nodes, "redis_type": kind}
    return RedisOnlineStore(load_config({"project": "unused", "online_store": block}))


def _view() -> Any:
    from ladle.definitions import Entity, FeatureView, Field, FileSource
    from ladle.types import Float64, String

    return FeatureView(
        name="reads",
        source=FileSource(path="x.parquet", timestamp_field="event_timestamp"),
        entities=[Entity(name="e", join_keys=["code"], value_type=String)],
        schema=[Field(name=f, dtype=Float64) for f in FEATURES],
    )


def table_of(codes: list[str]) -> pa.Table:
    """Rows of the bench's view for ``codes`` (feature ``f<k>`` of entity ``i`` is ``float(i)``)."""
    return pa.table(
        {
            "code": codes,
            "event_timestamp": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * len(codes), pa.timestamp("us", tz="UTC")),
            **{f: [float(i) for i in range(len(codes))] for f in FEATURES},
        }
    )


def _time(store: Any, project: str, requests: list[Any], warmup: int) -> tuple[list[float], float, float]:
    for r in requests[:warmup]:
        store.read(project, r)
    timed = requests[warmup:]
    lat = []
    perf = time.perf_counter_ns
    before = os.times()
    for r in timed:
        started = perf()
        store.read(project, r)
        lat.append((perf() - started) / 1000)
    after = os.times()
    user = (after.user - before.user) / len(timed) * 1e6
    system = (after.system - before.system) / len(timed) * 1e6
    return lat, user, system


def run(args: argparse.Namespace, cluster_nodes: str) -> None:
    """Write, then time reads alternately on both backends; one JSON line per backend and round."""
    from ladle.online.base import ReadRequest

    view = _view()
    codes = [f"C{i:06d}" for i in range(args.entities)]
    table = table_of(codes)
    project = f"rr{uuid.uuid4().hex[:8]}"
    nodes = {"redis": args.redis, "redis_cluster": cluster_nodes}
    stores = {kind: _store(kind, nodes[kind]) for kind in nodes if args.only in (None, kind)}
    rng = random.Random(7)
    try:
        for store in stores.values():
            store.write(project, view, table)
        gc.collect()
        gc.freeze()
        for round_no in range(args.rounds):
            for name, store in stores.items():
                requests = [
                    [ReadRequest(view, FEATURES, {"code": rng.sample(codes, args.batch)})]
                    for _ in range(args.warmup + args.calls)
                ]
                lat, user, system = _time(store, project, requests, args.warmup)
                emit(
                    {
                        "bench": "redis_reads",
                        "backend": name,
                        "round": round_no,
                        "batch": args.batch,
                        "calls": args.calls,
                        "p50_us": round(percentile(lat, 50), 1),
                        "p99_us": round(percentile(lat, 99), 1),
                        "mean_us": round(statistics.fmean(lat), 1),
                        "client_cpu_us_per_read": round(user + system, 1),
                        "client_user_us": round(user, 1),
                        "client_system_us": round(system, 1),
                    },
                    machine=round_no == 0,
                )
    finally:
        for store in stores.values():
            store.teardown(project, [])
            store.close()


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """The options naming the two backends and the data, shared with :mod:`bench.redis_timeline`."""
    parser.add_argument("--redis", default="127.0.0.1:6379", help="the single Redis (host:port)")
    parser.add_argument("--redis-nodes", default="", help="cluster startup nodes (default: start a local cluster)")
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)


def on_cluster(args: argparse.Namespace, body: Callable[[argparse.Namespace, str], None], needed: bool = True) -> None:
    """Run ``body(args, nodes)`` on ``--redis-nodes``, or on a local cluster started for it (when ``needed``)."""
    if args.redis_nodes or not needed:
        body(args, args.redis_nodes)
        return
    from bench.cluster import local_cluster

    with local_cluster() as nodes:
        body(args, nodes)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_options(parser)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["redis", "redis_cluster"], help="time one backend alone")
    args = parser.parse_args(argv)
    on_cluster(args, run, needed=args.only != "redis")
    return 0


if __name__ == "__main__":
    sys.exit(main())
