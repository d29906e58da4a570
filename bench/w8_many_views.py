"""W8: reads that span many feature views (the shape of Feast's published serving benchmark).

25 feature views of 10 float64 features each (250 features) on one entity, ``commodity_code``,
served by ``ladle serve`` from Redis. Workloads (WORKLOADS.md):

* **W8a** 1 entity row x 250 features at concurrency 1 (latency)
* **W8b** the same at concurrency 32 (throughput)
* **W8c** 10 entity rows x 250 features at concurrency 1
* **W8d** the same at concurrency 32

each through REST ``POST /get-online-features`` (``wrk``, a Lua script picking random entities)
and gRPC ``ServingService/GetOnlineFeatures`` (``h2load``, one fixed request), as bench/w3_server.py
does. The request lists the 250 ``view:feature`` references (``--feature-service`` asks for a
feature service of the 25 views instead).

Setup (not timed): a Parquet file of 10,000 entities x 1 row x 250 features (seed 42) is written to
a temporary directory, the 25 views (ttl ten years, so the ttl check runs and every value is
PRESENT) are applied to a fresh project and materialized into Redis; then ``ladle serve --workers N``
runs as a subprocess and is warmed up.

    apt-get install -y wrk nghttp2-client
    .venv/bin/python -m bench.w8_many_views --workers 2 --duration 8 --repeat 3
    .venv/bin/python -m bench.w8_many_views --only grpc --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import emit
from bench.w3_server import Server, _median_run, grpc_frame, measured, run_h2load_file, run_wrk_script, teardown

VIEWS = 25
PER_VIEW = 10
ENTITIES = 10_000
EVENT = datetime(2024, 1, 1, tzinfo=UTC)
SERVICE = "w8_all"

_LUA = """
math.randomseed(42)
local n, rows = {entities}, {rows}
local head = '{{"{selector}": {features}, "entities": {{"commodity_code": ['
request = function()
  local codes = {{}}
  for i = 1, rows do codes[i] = string.format('"CMD%05d"', math.random(0, n - 1)) end
  local body = head .. table.concat(codes, ",") .. ']}}}}'
  return wrk.format("POST", "/get-online-features", {{["Content-Type"] = "application/json"}}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('W3JSON {{"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def view_name(v: int) -> str:
    """The name of view number ``v``."""
    return f"fv_{v:02d}"


def feature_name(v: int, i: int) -> str:
    """Feature ``i`` of view ``v`` (unique across views, so short names do not collide)."""
    return f"f{v:02d}_{i}"


def feature_refs() -> list[str]:
    """All 250 ``view:feature`` references, view by view."""
    return [f"{view_name(v)}:{feature_name(v, i)}" for v in range(VIEWS) for i in range(PER_VIEW)]


def write_data(path: Path) -> None:
    """10,000 entities x 1 row x 250 float64 features, seed 42."""
    rng = np.random.default_rng(42)
    columns: dict[str, Any] = {
        "commodity_code": pa.array([f"CMD{i:05d}" for i in range(ENTITIES)]),
        "event_timestamp": pa.array([EVENT] * ENTITIES, pa.timestamp("us", tz="UTC")),
    }
    values = rng.standard_normal((VIEWS * PER_VIEW, ENTITIES))
    for v in range(VIEWS):
        for i in range(PER_VIEW):
            columns[feature_name(v, i)] = pa.array(values[v * PER_VIEW + i])
    pq.write_table(pa.table(columns), path)


def build_repo(repo: Path, data: Path, redis: str) -> str:
    """A repo with the 25 views (and a service of all of them) materialized into Redis; returns the project."""
    from ladle import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, Float64, ValueType

    project = f"w8_{uuid.uuid4().hex[:8]}"
    (repo / "feature_store.yaml").write_text(
        f"project: {project}\nregistry:\n  path: registry.db\n  cache_ttl_seconds: 60\n"
        f"online_store:\n  type: redis\n  connection_string: {redis}\noffline_store:\n  type: duckdb\n"
    )
    store = FeatureStore(repo_path=repo)
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    source = FileSource(name="w8_source", path=str(data), timestamp_field="event_timestamp")
    views = [
        FeatureView(
            name=view_name(v),
            entities=[commodity],
            ttl=timedelta(days=3650),
            schema=[Field(name=feature_name(v, i), dtype=Float64) for i in range(PER_VIEW)],
            source=source,
        )
        for v in range(VIEWS)
    ]
    service = FeatureService(name=SERVICE, features=views)
    store.apply([commodity, source, *views, service])
    store.materialize(EVENT - timedelta(days=1), EVENT + timedelta(days=1), [v.name for v in views])
    store.close()
    return project


def _selector(service: bool) -> dict[str, Any]:
    return {"feature_service": SERVICE} if service else {"features": feature_refs()}


def check_answers(server: Server, rows: int, service: bool) -> None:
    """One REST and one gRPC call, checked for 250 PRESENT values per row, before any load."""
    import grpc
    import httpx

    from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc

    codes = [f"CMD{i:05d}" for i in range(rows)]
    body = {**_selector(service), "entities": {"commodity_code": codes}}
    reply = httpx.post(f"http://127.0.0.1:{server.rest_port}/get-online-features", json=body).json()
    statuses = [s for r in reply["results"][1:] for s in r["statuses"]]
    assert len(statuses) == rows * VIEWS * PER_VIEW and set(statuses) == {"PRESENT"}, "REST answered without values"
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = serving_grpc.ServingServiceStub(channel)  # type: ignore[no-untyped-call]  # generated code
        answer = stub.GetOnlineFeatures(_grpc_request(codes, service))
    assert len(answer.results) == 1 + VIEWS * PER_VIEW, "gRPC answered the wrong columns"
    assert all(s == 1 for r in answer.results for s in r.statuses), "gRPC answered without values"


def _grpc_request(codes: list[str], service: bool) -> Any:
    from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
    from ladle.server._proto.feast.types import Value_pb2 as value_pb

    entities = {"commodity_code": value_pb.RepeatedValue(val=[value_pb.Value(string_val=c) for c in codes])}
    if service:
        return serving_pb.GetOnlineFeaturesRequest(feature_service=SERVICE, entities=entities)
    return serving_pb.GetOnlineFeaturesRequest(features=serving_pb.FeatureList(val=feature_refs()), entities=entities)


def run_wrk(server: Server, rows: int, connections: int, seconds: float, tmp: Path, service: bool) -> dict[str, Any]:
    """``wrk`` with random entities per request; latency percentiles from wrk's histogram."""
    selector = "feature_service" if service else "features"
    features = json.dumps(SERVICE if service else feature_refs())
    script = tmp / f"w8_{rows}.lua"
    script.write_text(_LUA.format(entities=ENTITIES, rows=rows, selector=selector, features=features))
    return run_wrk_script(server, script, connections, seconds)


def run_h2load(server: Server, rows: int, connections: int, seconds: float, tmp: Path, service: bool) -> dict[str, Any]:
    """``h2load`` sending one fixed gRPC-framed request (random entities, seed 7)."""
    rng = random.Random(7)
    codes = [f"CMD{rng.randrange(ENTITIES):05d}" for _ in range(rows)]
    message = _grpc_request(codes, service).SerializeToString()
    data = tmp / f"w8_{rows}.grpc"
    data.write_bytes(grpc_frame(message))
    return run_h2load_file(server, data, connections, seconds, tmp / f"w8_{rows}_{connections}.log")


WORKLOADS = (("W8a", 1, 1), ("W8b", 1, 32), ("W8c", 10, 1), ("W8d", 10, 32))


def run(args: argparse.Namespace) -> None:
    """Set up once, then each worker count x workload x protocol (taking turns); one JSON line each."""
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y wrk nghttp2-client")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        repo = tmp / "repo"
        repo.mkdir()
        write_data(tmp / "w8.parquet")
        build_repo(repo, tmp / "w8.parquet", args.redis)
        runners = {"rest": run_wrk, "grpc": run_h2load}
        try:
            for workers in args.workers:
                server = Server(repo, workers)
                try:
                    check_answers(server, 10, args.feature_service)
                    for protocol in args.only:
                        runners[protocol](server, 1, 4, 2, tmp, args.feature_service)  # warm-up (not reported)
                    for name, rows, conc in WORKLOADS:
                        if name not in args.workloads:
                            continue
                        runs: dict[str, list[dict[str, Any]]] = {p: [] for p in args.only}
                        for _ in range(args.repeat):
                            for protocol in args.only:
                                runner = runners[protocol]
                                result = measured(runner, server, rows, conc, args.duration, tmp, args.feature_service)
                                runs[protocol].append(result)
                        for protocol in args.only:
                            emit({"workload": f"{name}-{protocol}", "entities": rows, "features": VIEWS * PER_VIEW,
                                  "views": VIEWS, "concurrency": conc, "server_workers": workers,
                                  "feature_service": args.feature_service, "backend": "redis",
                                  "nproc": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
                                  **_median_run(runs[protocol])})  # fmt: skip
                finally:
                    server.stop()
        finally:
            teardown(repo)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="127.0.0.1:6379", help="Redis host:port")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[2],
                        help="server worker counts to run, e.g. 1,2")  # fmt: skip
    parser.add_argument("--only", type=lambda s: s.split(","), default=["rest", "grpc"], help="rest, grpc or both")
    parser.add_argument("--workloads", type=lambda s: s.split(","), default=[w[0] for w in WORKLOADS],
                        help="which of W8a,W8b,W8c,W8d")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs per workload and protocol (median reported)")
    parser.add_argument("--feature-service", action="store_true", help="ask for a feature service of the 25 views")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"total {time.time() - started:.0f} s", file=sys.stderr)
