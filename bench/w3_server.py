"""W3: the feature server under load (``ladle serve``, Redis online store), load generator in another process.

Workloads (WORKLOADS.md):

* **W3a** 1 entity x 3 features (``current_price, price_change_1h, volume_24h``) at concurrency 1: latency
* **W3b** the same at concurrency 32: throughput
* **W3c** 100 entities x all 8 features at concurrency 1

each through REST ``POST /get-online-features`` and gRPC ``ServingService/GetOnlineFeatures``.

Setup (not timed): a repo with the W1 view (ttl ten years, so the 2024 data is PRESENT and the ttl
check still runs) materialized from ``commodity_ticks.parquet`` into Redis under a fresh project;
then ``ladle serve --workers N`` runs as a subprocess (the real CLI) and is warmed up.

Load generators are C programs from Debian, separate processes: ``wrk`` (HTTP/1.1 keep-alive, a
Lua script picks a random entity per request and reports percentiles) and ``h2load`` (HTTP/2, one
fixed gRPC-framed request; percentiles from its per-request log). They share the machine's cores
with the server, which is reported with the results (``nproc``).

    apt-get install -y wrk nghttp2-client
    .venv/bin/python -m bench.w3_server --redis 127.0.0.1:6379               # everything
    .venv/bin/python -m bench.w3_server --only rest --duration 5 --workers 2
    .venv/bin/python -m bench.w3_server --workers 2 --duration 6 --repeat 3   # medians of 3, interleaved
    .venv/bin/python -m bench.w3_server --only grpc --grpc-engine grpcio        # grpcio's server instead
    .venv/bin/python -m bench.w3_server --workers 1 --auth api_key              # every request with a key
    .venv/bin/python -m bench.w3_server --workers 1 --odfv python              # + an on-demand view

With ``--odfv python|pandas`` every request also asks for ``order_value:order_value`` (an on-demand
feature view of that mode over ``current_price`` and a ``quantity`` request field sent with each
entity row), so the figures compare with a plain run of the same options.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from bench.common import emit, percentile, tree_cpu_seconds
from bench.data import DEFAULT_DIR, FEATURES, ensure_ticks
from bench.w3_auth import AUTH_KINDS, configure

VIEW = "commodity_price_features"
W3A_FEATURES = ["current_price", "price_change_1h", "volume_24h"]
START, END = datetime(2023, 12, 31, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC)
ENTITIES = 10_000

_LUA = """
math.randomseed(42)
local n, rows, features, auth, odfv = {entities}, {rows}, '{features}', '{auth}', {odfv}
local headers = {{["Content-Type"] = "application/json"}}
if auth ~= "" then headers["Authorization"] = auth end
request = function()
  local codes = {{}}
  for i = 1, rows do codes[i] = string.format('"CMD%05d"', math.random(0, n - 1)) end
  local extra = ''
  if odfv then
    local q = {{}}
    for i = 1, rows do q[i] = string.format('%d.5', math.random(1, 100)) end
    extra = ', "quantity": [' .. table.concat(q, ",") .. ']'
  end
  local entities = '"entities": {{"commodity_code": [' .. table.concat(codes, ",") .. ']' .. extra .. '}}'
  local body = '{{"features": ' .. features .. ', ' .. entities .. '}}'
  return wrk.format("POST", "/get-online-features", headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('W3JSON {{"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ODFV = "order_value"
_ODFV_FUNCTIONS = """
import pandas as pd


def order_value_python(inputs: dict) -> dict:
    pairs = zip(inputs["current_price"], inputs["quantity"])
    return {"order_value": [None if p is None else p * q for p, q in pairs]}


def order_value_pandas(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"order_value": inputs["current_price"] * inputs["quantity"]})
"""


def _odfv(repo: Path, view: Any, mode: str) -> Any:
    """The ``order_value`` on-demand view of ``mode``; its function lives in a repo file, as a user's would."""
    import importlib.util

    from ladle import Field, Float64, OnDemandFeatureView, RequestSource

    file = repo / "w3_odfv.py"
    file.write_text(_ODFV_FUNCTIONS)
    spec = importlib.util.spec_from_file_location("w3_odfv", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    request = RequestSource(name="order", schema=[Field(name="quantity", dtype=Float64)])
    return OnDemandFeatureView(
        name=ODFV, schema=[Field(name="order_value", dtype=Float64)], sources=[view[["current_price"]], request],
        udf=getattr(module, f"order_value_{mode}"), mode=cast(Literal["pandas", "python"], mode),
    )  # fmt: skip


def build_repo(repo: Path, ticks: Path, redis: str, odfv: str = "") -> str:
    """A feature repo in ``repo`` with the W1 view materialized into Redis (and the ODFV of mode
    ``odfv``, if given); returns the project."""
    from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, ValueType

    project = f"w3_{uuid.uuid4().hex[:8]}"
    (repo / "feature_store.yaml").write_text(
        f"project: {project}\nregistry:\n  path: registry.db\n  cache_ttl_seconds: 60\n"
        f"online_store:\n  type: redis\n  connection_string: {redis}\noffline_store:\n  type: duckdb\n"
    )
    store = FeatureStore(repo_path=repo)
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    source = FileSource(
        name="commodity_ticks", path=str(ticks), timestamp_field="event_timestamp", created_timestamp_column="created"
    )
    view = FeatureView(
        name=VIEW,
        entities=[commodity],
        ttl=timedelta(days=3650),
        schema=[Field(name=f, dtype=Float64) for f in FEATURES],
        source=source,
    )
    store.apply([commodity, source, view, *([_odfv(repo, view, odfv)] if odfv else [])])
    store.materialize(START, END, [VIEW])
    store.close()
    return project


def teardown(repo: Path) -> None:
    """Remove the project's keys from Redis."""
    from ladle import FeatureStore

    store = FeatureStore(repo_path=repo)
    try:
        store.teardown()
    finally:
        store.close()


class Server:
    """``ladle serve`` as a subprocess."""

    def __init__(self, repo: Path, workers: int, grpc_engine: str = "ladle", token: str | None = None) -> None:
        #: The ``Authorization`` value every request sends ('' without auth).
        self.authorization = f"Bearer {token}" if token else ""
        self.rest_port, self.grpc_port = _free_port(), _free_port()
        ladle = Path(sys.executable).parent / "ladle"
        command = [str(ladle), "-c", str(repo), "serve", "--workers", str(workers), "--grpc-engine", grpc_engine,
                   "--port", str(self.rest_port), "--grpc-port", str(self.grpc_port)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if "ready:" in line:
                break
        else:
            raise RuntimeError("ladle serve did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


#: ``odfv`` is set by ``--odfv``: every request also asks for the on-demand view's output.
OPTIONS: dict[str, bool] = {"odfv": False}


def _feature_refs(rows: int) -> list[str]:
    refs = [f"{VIEW}:{f}" for f in (W3A_FEATURES if rows == 1 else FEATURES)]
    return [*refs, f"{ODFV}:order_value"] if OPTIONS["odfv"] else refs


def _body(rows: int, rng: random.Random) -> dict[str, Any]:
    codes = [f"CMD{rng.randrange(ENTITIES):05d}" for _ in range(rows)]
    entities: dict[str, list[Any]] = {"commodity_code": codes}
    if OPTIONS["odfv"]:
        entities["quantity"] = [rng.randrange(1, 100) + 0.5 for _ in range(rows)]
    return {"features": _feature_refs(rows), "entities": entities}


def check_answers(server: Server, rows: int) -> None:
    """One REST and one gRPC call, checked for PRESENT values, before any load."""
    import grpc
    import httpx

    from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc

    body = _body(rows, random.Random(1))
    headers = {"Authorization": server.authorization} if server.authorization else {}
    url = f"http://127.0.0.1:{server.rest_port}/get-online-features"
    if headers:
        assert httpx.post(url, json=body).status_code == 401, "REST answered without a credential"
    reply = httpx.post(url, json=body, headers=headers).json()
    assert all(s == "PRESENT" for r in reply["results"] for s in r["statuses"]), "REST answered without values"
    metadata = tuple((k.lower(), v) for k, v in headers.items())
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = serving_grpc.ServingServiceStub(channel)  # type: ignore[no-untyped-call]  # generated code
        answer = stub.GetOnlineFeatures(_grpc_request(body), metadata=metadata)
    assert all(s == 1 for r in answer.results for s in r.statuses), "gRPC answered without values"


def _grpc_request(body: dict[str, Any]) -> Any:
    from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
    from ladle.server._proto.feast.types import Value_pb2 as value_pb

    codes = body["entities"]["commodity_code"]
    entities = {"commodity_code": value_pb.RepeatedValue(val=[value_pb.Value(string_val=c) for c in codes])}
    if "quantity" in body["entities"]:
        quantities = body["entities"]["quantity"]
        entities["quantity"] = value_pb.RepeatedValue(val=[value_pb.Value(double_val=q) for q in quantities])
    return serving_pb.GetOnlineFeaturesRequest(features=serving_pb.FeatureList(val=body["features"]), entities=entities)


def run_wrk(server: Server, rows: int, connections: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """``wrk`` with a random entity per request; latency percentiles from wrk's histogram."""
    features = json.dumps(_feature_refs(rows))
    script = tmp / f"w3_{rows}.lua"
    odfv = "true" if OPTIONS["odfv"] else "false"
    script.write_text(
        _LUA.format(entities=ENTITIES, rows=rows, features=features, auth=server.authorization, odfv=odfv)
    )
    return run_wrk_script(server, script, connections, seconds)


def run_wrk_script(server: Server, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    """``wrk`` with a Lua script whose ``done`` prints a ``W3JSON`` line (as :data:`_LUA` does)."""
    threads = 1 if connections < 8 else 2
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "-s", str(script),
               f"http://127.0.0.1:{server.rest_port}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("W3JSON "))
    raw = json.loads(line[len("W3JSON ") :])
    return {
        "requests": raw["requests"],
        "errors": raw["errors"] + raw["non_2xx"],
        "req_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6)),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "mean_ms": round(raw["mean_us"] / 1000, 3),
        "load_generator": f"wrk -t{threads} -c{connections}",
    }


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message (what h2load sends as the request body)."""
    return struct.pack(">?I", False, len(message)) + message


def run_h2load(server: Server, rows: int, connections: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """``h2load`` sending one gRPC-framed request; percentiles from its per-request log."""
    message = _grpc_request(_body(rows, random.Random(7))).SerializeToString()
    data = tmp / f"w3_{rows}.grpc"
    data.write_bytes(grpc_frame(message))
    return run_h2load_file(server, data, connections, seconds, tmp / f"w3_{rows}_{connections}.log")


def run_h2load_file(server: Server, data: Path, connections: int, seconds: float, log: Path) -> dict[str, Any]:
    """``h2load`` sending the gRPC-framed request in ``data``; percentiles from its per-request log."""
    log.unlink(missing_ok=True)  # h2load appends
    url = f"http://127.0.0.1:{server.grpc_port}/feast.serving.ServingService/GetOnlineFeatures"
    command = ["h2load", "-c", str(connections), "-m", "1", "-t", "1" if connections < 8 else "2",
               "-D", f"{seconds:g}", "--warm-up-time", "1", "-d", str(data),
               "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", str(log), url]  # fmt: skip
    if server.authorization:
        command[-1:-1] = ["-H", f"authorization: {server.authorization}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rows_ = [line.split("\t") for line in log.read_text().splitlines() if line]
    latencies = [int(r[2]) / 1000 for r in rows_]  # start_us, status, duration_us
    failed = sum(1 for r in rows_ if r[1] != "200")
    rate = next(line for line in done.stdout.splitlines() if line.startswith("finished in"))
    return {
        "requests": len(latencies),
        "errors": failed,
        "req_per_s": round(float(rate.split(",")[1].split()[0])),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3) if latencies else 0.0,
        "load_generator": f"h2load -c{connections} -m1",
    }


WORKLOADS = (("W3a", 1, 1), ("W3b", 1, 32), ("W3c", 100, 1))


def measured(runner: Any, server: Server, *args: Any) -> dict[str, Any]:
    """One load run plus the server's CPU per answered request (all worker processes).

    The CPU is taken over the load generator's whole run (warm-up included), so it is divided by
    the request rate times that wall time; a shared machine disturbs it less than latency.
    """
    cpu, wall = tree_cpu_seconds(server.process.pid), time.perf_counter()
    result: dict[str, Any] = runner(server, *args)
    cpu, wall = tree_cpu_seconds(server.process.pid) - cpu, time.perf_counter() - wall
    answered = result["req_per_s"] * wall
    result["server_cpu_us_per_req"] = round(cpu / answered * 1e6) if answered else None
    return result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, plus every run's rate and p50 (so the spread is visible)."""
    ordered = sorted(runs, key=lambda r: r["req_per_s"])
    middle = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        middle["runs"] = len(runs)
        middle["all_req_per_s"] = [r["req_per_s"] for r in runs]
        middle["all_p50_ms"] = [r["p50_ms"] for r in runs]
        middle["all_p99_ms"] = [r["p99_ms"] for r in runs]
        if "server_cpu_us_per_req" in middle:
            middle["all_server_cpu_us_per_req"] = [r["server_cpu_us_per_req"] for r in runs]
    return middle


def run(args: argparse.Namespace) -> None:
    """Set up once, then each worker count x workload x protocol; one JSON line each.

    With ``--repeat N`` every (workload, protocol) pair is measured N times, the protocols taking
    turns, and the median run (by throughput) is reported with the spread of all runs.
    """
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y wrk nghttp2-client")
    ticks = ensure_ticks(args.data)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        repo = tmp / "repo"
        repo.mkdir()
        OPTIONS["odfv"] = bool(args.odfv)
        build_repo(repo, ticks, args.redis, args.odfv)
        token, stop_idp = configure(repo, args.auth)
        try:
            for workers in args.workers:
                server = Server(repo, workers, args.grpc_engine, token)
                try:
                    check_answers(server, 100)
                    for protocol in args.only:
                        runner = run_wrk if protocol == "rest" else run_h2load
                        runner(server, 1, 4, 2, tmp)  # warm-up (not reported)
                    for name, rows, conc in WORKLOADS:
                        runs: dict[str, list[dict[str, Any]]] = {p: [] for p in args.only}
                        for _ in range(args.repeat):
                            for protocol in args.only:
                                runner = run_wrk if protocol == "rest" else run_h2load
                                runs[protocol].append(measured(runner, server, rows, conc, args.duration, tmp))
                        for protocol in args.only:
                            engine = {"grpc_engine": args.grpc_engine} if protocol == "grpc" else {}
                            emit({"workload": f"{name}-{protocol}", "entities": rows, "concurrency": conc,
                                  "server_workers": workers, "backend": "redis", "nproc": os.cpu_count(),
                                  "auth": args.auth, "odfv": args.odfv or "none",
                                  **engine, **_median_run(runs[protocol])})  # fmt: skip
                finally:
                    server.stop()
        finally:
            stop_idp()
            teardown(repo)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="directory of commodity_ticks.parquet")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="Redis host:port")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                        help="server worker counts to run, e.g. 1,2")  # fmt: skip
    parser.add_argument("--only", type=lambda s: s.split(","), default=["rest", "grpc"], help="rest, grpc or both")
    parser.add_argument("--repeat", type=int, default=1, help="runs per workload and protocol (median reported)")
    parser.add_argument("--auth", default="none", choices=AUTH_KINDS, help="auth: none, api_key or oidc")
    parser.add_argument("--odfv", default="", choices=["", "python", "pandas"],
                        help="also request an on-demand view of this mode (python or pandas)")  # fmt: skip
    parser.add_argument("--grpc-engine", default="ladle", choices=["ladle", "grpcio"], help="ladle serve --grpc-engine")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"total {time.time() - started:.0f} s", file=sys.stderr)
