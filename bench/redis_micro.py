"""Micro-benchmark of the Redis online store alone (no retrieval layer): writes and reads.

Measures ``RedisOnlineStore.write`` / ``read`` directly, in process, against a real Redis:

* ``write_1m``: 1,000,000 rows of 8 float64 features, 1,000,000 distinct entities (W1b's shape),
  into an empty project (inserts), then the same rows twice again (every row compared on the server
  and replaced);
* ``write_10k``: 10,000 entities (what W1a writes after keeping the latest row per entity);
* ``read_1x3``: 1 entity x 3 features; ``read_100x8``: 100 entities x 8 features (W2's shapes),
  ``--calls`` timed calls after warm-up.

Run::

    .venv/bin/python -m bench.redis_micro                       # 127.0.0.1:6379, db 15
    .venv/bin/python -m bench.redis_micro --spawn               # a private redis-server on a free port
    .venv/bin/python -m bench.redis_micro --connection-string 127.0.0.1:7000,127.0.0.1:7001 --cluster

Prints one JSON object per measurement, then a table. The benchmark's project is torn down at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from ladle.config import load_config
from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.online.base import ReadRequest
from ladle.online.redis.cluster import ClusterNodes
from ladle.online.redis.store import RedisOnlineStore
from ladle.types import Float64, String

FEATURES = (
    "current_price",
    "price_change_1h",
    "price_change_24h",
    "volume_24h",
    "volatility_7d",
    "ma_7d",
    "ma_30d",
    "rsi_14d",
)
PROJECT = "bench_redis_micro"


def make_view() -> FeatureView:
    """``commodity_price_features`` as WORKLOADS.md defines it."""
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=String)
    source = FileSource(path="ticks.parquet", timestamp_field="event_timestamp", created_timestamp_column="created")
    schema = [Field(name=f, dtype=Float64) for f in FEATURES]
    return FeatureView(
        name="commodity_price_features", source=source, entities=[commodity], ttl=timedelta(days=30), schema=schema
    )


def make_rows(entities: int, seed: int = 7) -> pa.Table:
    """One row per entity, event times in the 100-hour span, created = event + 0-59 s."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    event = start + rng.integers(0, 100 * 3_600_000_000, entities)
    created = event + rng.integers(0, 60_000_000, entities)
    ts = pa.timestamp("us", tz="UTC")
    columns: dict[str, Any] = {
        "commodity_code": pa.array([f"CMD{i:07d}" for i in range(entities)]),
        "event_timestamp": pa.array(event, ts),
        "created_timestamp": pa.array(created, ts),
    }
    for f in FEATURES:
        columns[f] = pa.array(rng.normal(100, 10, entities))
    return pa.table(columns)


def server_cpu(store: RedisOnlineStore) -> float:
    """CPU seconds the Redis server(s) have used (user + sys, summed over cluster primaries)."""
    io: Any = store._io
    if isinstance(io, ClusterNodes):
        per_node = io.run(lambda c: c.info("cpu", target_nodes=c.PRIMARIES))
        return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in per_node.values())
    text = io.execute("INFO", "cpu").decode()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def timed_write(store: RedisOnlineStore, view: FeatureView, rows: pa.Table, name: str) -> dict[str, Any]:
    """Wall time, plus client and server CPU time (steadier than wall on a busy machine)."""
    server0, client0, t0 = server_cpu(store), time.process_time(), time.perf_counter()
    written = store.write(PROJECT, view, rows)
    wall = time.perf_counter() - t0
    client, server = time.process_time() - client0, server_cpu(store) - server0
    return {
        "name": name,
        "rows": rows.num_rows,
        "written": written,
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows.num_rows / wall),
        "client_cpu_s": round(client, 3),
        "server_cpu_s": round(server, 3),
    }


def timed_reads(store: RedisOnlineStore, requests: list[ReadRequest], name: str, calls: int) -> dict[str, Any]:
    for _ in range(200):
        store.read(PROJECT, requests)
    samples = np.empty(calls, dtype=np.int64)
    for i in range(calls):
        t0 = time.perf_counter_ns()
        store.read(PROJECT, requests)
        samples[i] = time.perf_counter_ns() - t0
    us = samples / 1000
    return {
        "name": name,
        "calls": calls,
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
    }


@contextmanager
def private_server() -> Iterator[str]:
    """A throw-away redis-server (no persistence) on a free port, so other clients do not interfere."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        args = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            for _ in range(200):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.02)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connection-string", default="127.0.0.1:6379,db=15")
    parser.add_argument("--cluster", action="store_true", help="redis_type: redis_cluster")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--spawn", action="store_true", help="run against a private redis-server on a free port")
    args = parser.parse_args()
    if args.spawn:
        with private_server() as address:
            args.connection_string = address
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    """Run every measurement and print the results."""
    config = load_config(
        {
            "project": PROJECT,
            "online_store": {
                "type": "redis",
                "connection_string": args.connection_string,
                "redis_type": "redis_cluster" if args.cluster else "redis",
            },
        }
    )
    store = RedisOnlineStore(config)
    view = make_view()
    store.teardown(PROJECT, [view])
    results = []
    try:
        big = make_rows(args.rows)
        results.append(timed_write(store, view, big, f"write_{args.rows}_insert"))
        # the first rewrite still tries MSETNX (the insert left a "new keys" hint); the second does not
        results.append(timed_write(store, view, big, f"write_{args.rows}_replace"))
        results.append(timed_write(store, view, big, f"write_{args.rows}_replace_again"))
        store.teardown(PROJECT, [view])
        small = make_rows(10_000, seed=8)
        results.append(timed_write(store, view, small, "write_10000_insert"))
        codes = small.column("commodity_code").to_pylist()
        rng = np.random.default_rng(1)
        one = ReadRequest(view, ["current_price", "price_change_1h", "volume_24h"], {"commodity_code": [codes[5]]})
        hundred = ReadRequest(view, list(FEATURES), {"commodity_code": [codes[i] for i in rng.choice(10_000, 100)]})
        results.append(timed_reads(store, [one], "read_1x3", args.calls))
        results.append(timed_reads(store, [hundred], "read_100x8", args.calls))
    finally:
        store.teardown(PROJECT, [view])
        store.close()
    env = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "backend": "redis_cluster" if args.cluster else "redis",
        "connection_string": args.connection_string,
    }
    for r in results:
        print(json.dumps({**r, **env}))
    print()
    for r in results:
        detail = (
            f"{r['wall_s']:>8.3f} s {r['rows_per_s']:>10,} rows/s"
            f"  cpu: client {r['client_cpu_s']:.2f} s, server {r['server_cpu_s']:.2f} s"
            if "wall_s" in r
            else f"p50 {r['p50_us']:>8.1f} us  p99 {r['p99_us']:>8.1f} us  mean {r['mean_us']:>8.1f} us"
        )
        print(f"{r['name']:<28} {detail}")


if __name__ == "__main__":
    main()
