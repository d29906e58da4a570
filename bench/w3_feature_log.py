"""W3 with served-feature logging: the same reads through a logged and an unlogged feature service.

The W3 repo (bench/w3_server.py: the W1 view materialized into Redis) gets two pairs of feature
services with the same features: ``w3a_plain`` / ``w3a_logged`` (W3a/W3b's three features) and
``w3c_plain`` / ``w3c_logged`` (all eight, for W3c), the ``_logged`` ones with
``LoggingConfig(sample_rate=1.0)`` (every request logged to Parquet in the repo). One ``ladle serve``
answers both, and every round measures off then on (interleaved), so drift in the machine's load
hits both sides alike. Reported per workload and protocol: the median of the rounds for each side
and the changes in server CPU per request (the figure a shared machine disturbs least; the
flusher's work included: each run's CPU window ends a settle time after it), throughput and p50.

The writer writes every ``--flush-interval`` seconds, by default the configuration's (5 s), so the
headline figures are those of the default configuration. Earlier sittings used 0.5 s (still
``--flush-interval 0.5``): half the settle time, so that each run's last write landed inside that
run's CPU window and the CPU per request was the run's own. But a write has a fixed cost (1.3-2 ms
of writer CPU whatever its size: a file, a Parquet footer, the writer waking; measured in one
process, docs/feature-logging.md, "Cost"), so a 0.5 s interval paid it ten times as often as the
default, and at W3a (one connection, ~350 logged requests a write) that fixed cost was a tenth of
logging's CPU. At the default interval the writes run at their own pace across the runs: a run
plus its settle (4-5 s) holds about one write, possibly of the previous run's requests, so a logged
run's writer CPU can land in the next run's window (a plain one, every other round with the ABBA
order). That blurs the CPU per request by the writer's share, at W3a about 4 us per logged
request (its price), not the throughput, which is what the gate is about: the writer working in the
background at its own pace is how the default configuration runs. Lengthening the settle to a full
interval would keep the writes in their runs at the cost of doubling every sitting; not done.

    .venv/bin/python -m bench.w3_feature_log --workers 2 --duration 5 --rounds 3
    .venv/bin/python -m bench.w3_feature_log --only rest --workloads W3b --rounds 5
    .venv/bin/python -m bench.w3_feature_log --workloads W3b --rounds 6 --control   # A/A: both sides plain
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit
from bench.data import DEFAULT_DIR, FEATURES, ensure_ticks
from bench.w3_server import (
    ENTITIES,
    VIEW,
    W3A_FEATURES,
    Server,
    build_repo,
    grpc_frame,
    run_h2load_file,
    run_wrk_script,
    teardown,
)
from ladle.config import FeatureLoggingConfig

_LUA = """
math.randomseed(42)
local n, rows, service = {entities}, {rows}, '{service}'
local headers = {{["Content-Type"] = "application/json"}}
request = function()
  local codes = {{}}
  for i = 1, rows do codes[i] = string.format('"CMD%05d"', math.random(0, n - 1)) end
  local body = '{{"feature_service": "' .. service .. '", "entities": {{"commodity_code": [' ..
    table.concat(codes, ",") .. ']}}}}'
  return wrk.format("POST", "/get-online-features", headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('W3JSON {{"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""
WORKLOADS = {"W3a": (1, 1), "W3b": (1, 32), "W3c": (100, 1)}
#: Idle time after each run, inside its CPU window, so the flusher's work lands in the run that caused it.
SETTLE_SECONDS = 1.0
#: The configuration's default flush interval (the headline figures are the default configuration's).
FLUSH_INTERVAL = FeatureLoggingConfig.model_fields["flush_interval_secs"].default
#: The configuration's default CPU budget (likewise).
CPU_BUDGET = FeatureLoggingConfig.model_fields["cpu_budget"].default


def measured(runner: Any, server: Server, *args: Any, settle: float = SETTLE_SECONDS) -> dict[str, Any]:
    """One load run plus the server's CPU per request (every worker, flusher threads included).

    CPU is taken over the run and a short settle after it, divided by the requests the load
    generator counted: a shared machine disturbs it far less than throughput or latency.
    """
    from bench.common import tree_cpu_seconds

    workers = _workers(server.process.pid)
    per_worker = [tree_cpu_seconds(pid) for pid in workers]
    cpu = tree_cpu_seconds(server.process.pid)
    started = time.time()
    result: dict[str, Any] = runner(server, *args)
    result["wall"] = [(started, time.time())]  # the run's spans, to find its rows in the log
    time.sleep(settle)
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    grew = [tree_cpu_seconds(pid) - before for pid, before in zip(workers, per_worker, strict=True)]
    result["worker"] = grew.index(max(grew)) if grew else None  # the one that served (one connection)
    result["server_cpu_us_per_req"] = round(cpu / result["requests"] * 1e6, 1) if result["requests"] else None
    return result


def _workers(pid: int) -> list[int]:
    """The server's worker processes (its children), in pid order."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return sorted(children)


def add_services(
    repo: Path, sample_rate: float = 1.0, cpu_budget: float | None = None, flush_interval: float = FLUSH_INTERVAL
) -> None:
    """The plain and logged feature services over the W3 view; logs flushed every ``flush_interval``
    seconds, under ``cpu_budget`` (None: none, every sampled request logged)."""
    from ladle import FeatureService, FeatureStore, LoggingConfig

    with (repo / "feature_store.yaml").open("a") as yaml:
        yaml.write(f"feature_server:\n  feature_logging:\n    flush_interval_secs: {flush_interval}\n")
        yaml.write(f"    cpu_budget: {'null' if cpu_budget is None else cpu_budget}\n")

    store = FeatureStore(repo_path=repo)
    view = store.get_feature_view(VIEW)
    services = []
    for prefix, features in (("w3a", W3A_FEATURES), ("w3c", list(FEATURES))):
        services.append(FeatureService(name=f"{prefix}_plain", features=[view[features]]))
        services.append(
            FeatureService(
                name=f"{prefix}_logged",
                features=[view[features]],
                logging_config=LoggingConfig(sample_rate=sample_rate),
            )
        )
    store.apply(services, partial=True)
    store.close()


def _rest(server: Server, service: str, rows: int, conc: int, seconds: float, tmp: Path) -> dict[str, Any]:
    script = tmp / f"{service}_{rows}.lua"
    script.write_text(_LUA.format(entities=ENTITIES, rows=rows, service=service))
    return run_wrk_script(server, script, conc, seconds)


def _grpc(server: Server, service: str, rows: int, conc: int, seconds: float, tmp: Path) -> dict[str, Any]:
    from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
    from ladle.server._proto.feast.types import Value_pb2 as value_pb

    rng = random.Random(7)
    codes = [f"CMD{rng.randrange(ENTITIES):05d}" for _ in range(rows)]
    message = serving_pb.GetOnlineFeaturesRequest(
        feature_service=service,
        entities={"commodity_code": value_pb.RepeatedValue(val=[value_pb.Value(string_val=c) for c in codes])},
    ).SerializeToString()
    data = tmp / f"{service}_{rows}.grpc"
    data.write_bytes(grpc_frame(message))
    return run_h2load_file(server, data, conc, seconds, tmp / f"{service}_{rows}_{conc}.log")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "req_per_s": statistics.median(r["req_per_s"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "cpu_us_per_req": statistics.median(r["server_cpu_us_per_req"] for r in runs),
        "all_cpu_us_per_req": [r["server_cpu_us_per_req"] for r in runs],
        "all_req_per_s": [r["req_per_s"] for r in runs],
        "all_p50_ms": [r["p50_ms"] for r in runs],
        "all_workers": [r["worker"] for r in runs],
        "errors": sum(r["errors"] for r in runs),
    }


def _joined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One round's figures from its segments (equal lengths): mean rate, median p50/p99, CPU per
    request over all of them, every span, the worker of the first segment."""
    if len(runs) == 1:
        return runs[0]
    requests = sum(r["requests"] for r in runs)
    cpu = sum(r["server_cpu_us_per_req"] * r["requests"] for r in runs if r["server_cpu_us_per_req"] is not None)
    return {
        "requests": requests,
        "errors": sum(r["errors"] for r in runs),
        "req_per_s": round(statistics.fmean(r["req_per_s"] for r in runs)),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "server_cpu_us_per_req": round(cpu / requests, 1) if requests else None,
        "wall": [span for r in runs for span in r["wall"]],
        "worker": runs[0]["worker"],
    }


def _change(on: float, off: float) -> float:
    return round(100 * (on / off - 1), 1)


def paired(off: list[dict[str, Any]], on: list[dict[str, Any]]) -> dict[str, Any]:
    """The throughput change of each round (logged against the plain run of the same round), their
    median, and a 90 % bootstrap interval of that median: rounds are paired, so slow drift of a
    shared machine cancels, and the interval says whether a change is inside the noise."""
    changes = [100 * (b["req_per_s"] / a["req_per_s"] - 1) for a, b in zip(off, on, strict=True)]
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(changes, k=len(changes))) for _ in range(2000))
    return {
        "round_changes_pct": [round(c, 1) for c in changes],
        "paired_change_pct": round(statistics.median(changes), 1),
        "paired_change_90ci_pct": [round(medians[100], 1), round(medians[1899], 1)],
    }


def log_rates(repo: Path) -> dict[str, dict[str, float]]:
    """Per logged service: rows in its log and the mean and lowest ``sample_rate`` they were logged at."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    out = {}
    for folder in sorted((repo / "data" / "feature_logs").iterdir()):
        rates = ds.dataset(folder, format="parquet").to_table(columns=["sample_rate"]).column("sample_rate")
        out[folder.name] = {
            "rows": len(rates),
            "mean_sample_rate": round(pc.mean(rates).as_py(), 3),
            "min_sample_rate": round(pc.min(rates).as_py(), 3),
        }
    return out


def logged_shares(repo: Path, runs: list[dict[str, Any]], rows_per_request: int) -> list[float]:
    """Per logged run, the share of its requests found in the log (rows stamped inside the run's
    span, over the rows served in it at the run's rate): what the CPU budget let through in that run."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    folders = sorted((repo / "data" / "feature_logs").iterdir())
    times = [ds.dataset(f, format="parquet").to_table(columns=["log_time"]).column("log_time") for f in folders]
    shares = []
    for run_ in runs:
        found = 0
        for span in run_["wall"]:
            start, end = (pa_ts(t) for t in span)
            found += sum(pc.sum(pc.and_(pc.greater_equal(t, start), pc.less_equal(t, end))).as_py() or 0 for t in times)
        served = run_["req_per_s"] * sum(b - a for a, b in run_["wall"]) * rows_per_request  # h2load's warm-up too
        shares.append(round(found / served, 3) if served else 0.0)
    return shares


def pa_ts(seconds: float) -> Any:
    """An Arrow UTC timestamp scalar (microseconds) for ``seconds`` since the epoch."""
    import pyarrow as pa

    return pa.scalar(int(seconds * 1e6), pa.timestamp("us", tz="UTC"))


def log_rows(repo: Path) -> int:
    """Rows in the Parquet logs of the logged services (a check that logging really ran)."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in (repo / "data" / "feature_logs").rglob("*.parquet"))


def run(args: argparse.Namespace) -> None:
    """Set up, then every round measures each (workload, protocol) with logging off and then on."""
    ticks = ensure_ticks(args.data)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        repo = tmp / "repo"
        repo.mkdir()
        build_repo(repo, ticks, args.redis)
        add_services(repo, args.sample_rate, args.cpu_budget, args.flush_interval)
        try:
            server = Server(repo, args.workers)
            runners = {"rest": _rest, "grpc": _grpc}
            results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
            # the service each side asks for (--control: both the plain one, an A/A run)
            asked = {"plain": "plain", "logged": "plain" if args.control else "logged"}
            try:
                for protocol in args.only:  # warm-up, not reported
                    for side in ("plain", "logged"):
                        runners[protocol](server, f"w3a_{side}", 1, 4, 2, tmp)
                for round_ in range(args.rounds):
                    for name in args.workloads:
                        rows, conc = WORKLOADS[name]
                        prefix = "w3a" if rows == 1 else "w3c"
                        for protocol in args.only:
                            # ABBA: the order alternates, so a drift of the machine between the two
                            # runs of a round does not always favour the same side.
                            # With --segments N each side's run is N shorter runs, the sides alternating
                            # ABBA inside the round too (P L L P ...), so the two sides of a round
                            # are measured closer in time; the round's figures join the segments.
                            segments: dict[str, list[dict[str, Any]]] = {"plain": [], "logged": []}
                            for part in range(args.segments):
                                order = ("plain", "logged") if (round_ + part) % 2 == 0 else ("logged", "plain")
                                for side in order:
                                    segments[side].append(
                                        measured(
                                            runners[protocol], server, f"{prefix}_{asked[side]}", rows, conc,
                                            args.duration / args.segments, tmp, settle=args.settle,
                                        )
                                    )  # fmt: skip
                            for side, runs in segments.items():
                                results.setdefault((name, protocol, side), []).append(_joined(runs))
            finally:
                server.stop()  # graceful: the workers flush their queues
            logged = log_rows(repo)
            served = sum(  # entity rows of the logged runs (warm-up not counted): each is one log row
                run_["requests"] * (1 if name != "W3c" else 100) * args.sample_rate
                for (name, _, side), runs in results.items()
                if side == "logged"
                for run_ in runs
            )
            for name in args.workloads:
                for protocol in args.only:
                    off = _summary(results[(name, protocol, "plain")])
                    on = _summary(results[(name, protocol, "logged")])
                    emit(
                        {
                            "workload": f"{name}-{protocol}-feature-log",
                            "server_workers": args.workers,
                            "rounds": args.rounds,
                            "sample_rate": args.sample_rate,
                            "cpu_budget": args.cpu_budget,
                            "flush_interval_secs": args.flush_interval,
                            "control": args.control,
                            "off": off,
                            "on": on,
                            "cpu_per_req_change_pct": round(
                                100 * (on["cpu_us_per_req"] / off["cpu_us_per_req"] - 1), 1
                            ),
                            "throughput_change_pct": _change(on["req_per_s"], off["req_per_s"]),
                            **paired(results[(name, protocol, "plain")], results[(name, protocol, "logged")]),
                            "p50_change_pct": _change(on["p50_ms"], off["p50_ms"]),
                            "logged_share_per_round": logged_shares(
                                repo, results[(name, protocol, "logged")], 1 if name != "W3c" else 100
                            ),
                        }
                    )
            expected = round(served)  # at the configured rate; under a budget, fewer (see log_rates)
            print(json.dumps({"log_rows_written": logged, "logged_rows_expected_in_measured_runs": expected}))
            print(json.dumps({"cpu_budget": args.cpu_budget, "log_rates": log_rates(repo)}))
        finally:
            teardown(repo)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options the logging benches share: data, Redis, the logged services' rate and budget."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="directory of commodity_ticks.parquet")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="Redis host:port")
    parser.add_argument("--sample-rate", type=float, default=1.0, help="the logged services' sample_rate")
    parser.add_argument(
        "--cpu-budget",
        type=lambda v: None if v == "none" else float(v),
        default=CPU_BUDGET,
        help="feature_logging.cpu_budget, a share of a core per worker (default: the configuration's; "
        "'none': log every sampled request)",
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_common_options(parser)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2, help="ladle serve --workers")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved off/on rounds")
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=FLUSH_INTERVAL,
        help="feature_logging.flush_interval_secs (default: the configuration's; earlier sittings: 0.5)",
    )
    parser.add_argument(
        "--segments", type=int, default=1, help="runs per side per round (ABBA inside the round too), each duration/N"
    )
    parser.add_argument(
        "--settle", type=float, default=SETTLE_SECONDS, help="idle seconds after each run, inside its CPU window"
    )
    parser.add_argument("--only", type=lambda s: s.split(","), default=["rest", "grpc"], help="rest, grpc or both")
    parser.add_argument(
        "--control",
        action="store_true",
        help="A/A: the 'logged' side asks for the plain service too (the design's own spread; nothing is logged)",
    )
    parser.add_argument("--workloads", type=lambda s: s.split(","), default=list(WORKLOADS), help="W3a,W3b,W3c")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
