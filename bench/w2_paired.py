"""W2 on one Redis and on a Redis Cluster, call by call: two stores, interleaved (in one process or two).

Issue #16 asks that W2b (100 entities x 8 features, in-process ``get_online_features``) on a
3-master local cluster stay within 1.5x of one Redis server. ``bench/w2_online.py`` run once per
backend measures the two a few seconds apart, and on a shared 2-vCPU VM the machine drifts between
the runs by more than the effect (1.2x-1.9x round by round). This bench pairs calls instead of runs:

* one process sets up two stores exactly as ``bench/w2_online.py`` does (:func:`prepared_store`:
  the W1 view materialized from the same ticks file, the retriever's clock pinned inside the ttl
  window, every value checked PRESENT): **single** on one Redis (``--redis``), **cluster** on a
  Redis Cluster (``--redis-nodes``, or a 3-master cluster started for the run, ``bench/cluster.py``);
* then, per workload (W2a 1 x 3, W2b 100 x 8), pairs of calls: each pair draws one random entity
  set (seed ``--seed``) and calls both stores' ``get_online_features`` with it, in a random order
  within the pair, each call timed alone with ``time.perf_counter_ns()``; ``--warmup`` pairs
  first, not reported; ``gc.collect()`` and (``--gc-freeze``, on by default) ``gc.freeze()``
  between warm-up and the timed pairs; every ``SPOT_CHECK_EVERY``-th pair both answers are compared
  (outside the clock).

A drift of the machine hits both calls of a pair within a millisecond, so the comparison is within
pairs. With ``--run N`` a pair is two *runs*: N arguments drawn at once, handed one call each to one
arm, then the same N to the other; the first ``--settle`` calls of each run are not kept, and the
k-th kept call of one run pairs with the k-th of the other. Single calls alternate with cluster
calls when ``--run 1``, and each arm then runs straight after the other's three masters or one
server woke and worked: a single-server call made right after a cluster call is 2-7 % slower than
one made first (2026-12-07), so alternating call by call measures each arm a little off its own
steady state. Runs (e.g. ``--run 20 --settle 4``) let each arm settle into it before it is timed
while still pairing within ~10 ms. Reported per workload: each arm's median / p99 / mean, the ratio of the arms' p50
(cluster / single) and the median of the per-pair differences (cluster - single), each with a 90 %
interval from the block bootstrap (blocks of ``--block`` consecutive pairs resampled with
replacement, so slow drift stays inside a block), the spread of the blocks' own ratios, and each
arm's p50 when it was called first and second in its pair (the order effect the random order
cancels). ``--control`` is an A/A run: the second arm is another store on the same single server
(its own project and connection), so the ratio shows the design's own bias. It is not quite 1.00,
and its sign depends on the design (2026-12-07 sittings, bench/README.md): with single calls
(``--run 1``) the store set up first answers ~1.2-1.5 % faster, with runs (``--run 20 --settle
4``) the store set up second answers ~4-5 % faster (A/A 0.952-0.957, 1.054 with the order
flipped), whichever arm it is. So by default (``--build-first auto``) the cluster's store is set up
second with single calls and first with runs: the bias counts against the cluster, never for it.

``--processes`` puts each arm's store in its own child process (``multiprocessing``, "spawn"), set
up the same way and in the same order (the same ``rng`` passes from one set-up to the next), warmed
up by the same pairs and settled (:func:`settle_gc`) there. The parent draws the pairs as above
and sends each child a run's entity rows; the child times each ``get_online_features`` call alone
and sends the nanoseconds back (the pipe is outside the clock), with its answer on spot-check pairs.
Why: the one-process design favours the cluster (2026-12-07). In W2b one server's p50 was 234-292 µs
with both stores in one process but 182-195 µs with each arm in its own process (the cluster's
336-396 µs either way), a ratio of ~1.85-2.0 instead of ~1.3-1.47. The likely cause is where the
scheduler puts the client against the Redis server: one server answers ~90 µs sooner when it shares
the client's vCPU, and a process that also drives the three masters keeps it off that vCPU.
A child that dies, raises or stalls fails the run (:class:`ChildFailed`), and the children are
always stopped and their projects torn down.

But with each arm in its own process the single server's arm is the one that can share the client's
vCPU, which production never does: ``--processes`` read one server at 104-124 µs on an Intel VM
(2026-12-07), exactly what it takes pinned to the client's vCPU (104 µs; 183 µs on the other).
``--pin 1:0`` (:mod:`bench.pin`) keeps every server of both arms off the client's CPU for the whole
run (the children inherit it): the fair comparison on a 2-vCPU machine, where the three masters
then share one CPU, against the cluster.

``--cluster-floor`` swaps the cluster store's reads for :class:`~bench.cluster_floor.BareClusterReads`
(each run's routing, framing and reply order worked out before it is timed): the cluster's W2b
with a read path that costs only its I/O: the floor under its ratio on the machine.

    redis-server --port 6392 --save '' --appendonly no --daemonize yes
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w2_paired --redis 127.0.0.1:6392
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w2_paired --redis 127.0.0.1:6392 --workloads W2b --pairs 10000
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w2_paired --redis 127.0.0.1:6392 --run 20 --settle 4 --pairs 300
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w2_paired --redis 127.0.0.1:6392 --control
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w2_paired --redis 127.0.0.1:6392 --control --build-first cluster
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w2_paired --redis 127.0.0.1:6392 --processes --run 20 --settle 4
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w2_paired --redis 127.0.0.1:6392 --processes --cluster-floor
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w2_paired --redis 127.0.0.1:6392 --processes --run 20 --pin 1:0
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol

from bench.cluster_floor import BareClusterReads
from bench.common import PairedMeasure, block_bootstrap_intervals, emit, paired_blocks, redis_servers, summarize
from bench.data import DEFAULT_DIR, ensure_ticks, entity_codes
from bench.pin import parse_pin, pinned
from bench.w2_online import W2A_REFS, W2B_REFS, draw_rows, prepared_store, release_store, settle_gc

#: Entities per call and feature references of each workload.
WORKLOADS: dict[str, tuple[int, list[str]]] = {"W2a": (1, W2A_REFS), "W2b": (100, W2B_REFS)}
ARMS = ("single", "cluster")
#: Every how many pairs both answers are compared (outside the clock).
SPOT_CHECK_EVERY = 97

#: Seconds the parent waits for a child (``--processes``): its set-up, one run, its stop.
CHILD_SETUP_TIMEOUT, CHILD_RUN_TIMEOUT, CHILD_STOP_TIMEOUT = 900.0, 120.0, 120.0

Call = Callable[[Any], Any]
#: Times one run of one arm: ``(arguments, answer) -> (nanoseconds per call, answer to the first
#: argument)``; the answer may be ``None`` unless ``answer`` asks for it (the spot checks).
RunTimer = Callable[[list[Any], bool], tuple[list[int], Any]]


def pair_order(rng: random.Random) -> tuple[str, str]:
    """The order of the two arms within one pair: either, with probability 1/2."""
    return ARMS if rng.random() < 0.5 else (ARMS[1], ARMS[0])


def time_calls(call: Call, arguments: Sequence[Any]) -> tuple[list[int], Any]:
    """Calls ``call`` with each argument in turn, each call alone between two ``perf_counter_ns()``;
    the nanoseconds of each call and the answer to the first argument. Both paths time with it: in
    this process, and in an arm's child process (``--processes``)."""
    perf = time.perf_counter_ns
    times: list[int] = []
    first: Any = None
    for k, argument in enumerate(arguments):
        started = perf()
        answer = call(argument)
        times.append(perf() - started)
        if k == 0:
            first = answer
    return times, first


def interleave(
    runs: Mapping[str, RunTimer],
    draw: Callable[[], Any],
    rng: random.Random,
    pairs: int,
    seconds: float | None = None,
    check: Callable[[Any, dict[str, Any]], None] | None = None,
    run: int = 1,
    settle: int = 0,
) -> tuple[dict[str, list[int]], list[str]]:
    """Pairs of runs: each pair draws ``run`` arguments with ``draw`` and hands the same list to one
    arm's :data:`RunTimer` in ``runs`` and then to the other's, in the order :func:`pair_order` picks
    (each timer times each call alone, :func:`time_calls`); the first ``settle`` calls of each run are
    not kept. With ``run=1`` (the default) a pair is two calls with one argument. Runs ``pairs``
    pairs, or with ``seconds`` until that much time has passed. Every ``SPOT_CHECK_EVERY``-th pair
    (the first included) the timers are asked for their answers to the pair's first argument, and
    ``check(argument, answers)`` sees both. Returns each arm's kept nanoseconds in order (the k-th of
    one arm pairs with the k-th of the other: same argument, adjacent runs) and, per kept call, the
    arm whose run came first."""
    if run < 1 or not 0 <= settle < run:
        raise ValueError(f"a run is at least 1 call and keeps at least one: run={run}, settle={settle}")
    times: dict[str, list[int]] = {arm: [] for arm in ARMS}
    firsts: list[str] = []
    deadline = None if seconds is None else time.monotonic() + seconds
    pair = 0
    while (pair < pairs) if deadline is None else (time.monotonic() < deadline):
        arguments = [draw() for _ in range(run)]
        order = pair_order(rng)
        spot = check is not None and pair % SPOT_CHECK_EVERY == 0
        answers: dict[str, Any] = {}
        for arm in order:
            elapsed, answers[arm] = runs[arm](arguments, spot)
            times[arm] += elapsed[settle:]
        firsts += [order[0]] * (run - settle)
        if check is not None and spot:
            check(arguments[0], answers)
        pair += 1
    return times, firsts


def check_answers(argument: Any, answers: Mapping[str, Any]) -> None:
    """Both arms answered the same names, values and statuses, every status PRESENT."""
    from ladle.types import FieldStatus

    single, cluster = answers["single"], answers["cluster"]
    if any(s != FieldStatus.PRESENT for column in single.statuses for s in column):
        raise ValueError(f"single: not every value PRESENT for {argument!r:.200}")
    if (single.feature_names, single.values, single.statuses) != (
        cluster.feature_names,
        cluster.values,
        cluster.statuses,
    ):
        raise ValueError(f"the arms answered differently for {argument!r:.200}")


def paired_stats(
    single_ns: Sequence[int], cluster_ns: Sequence[int], block: int, resamples: int = 2000, seed: int = 1
) -> dict[str, Any]:
    """The ratio of the arms' p50 (cluster / single) and the median of the per-pair differences
    (cluster - single, µs), each with a 90 % block-bootstrap interval (:func:`block_bootstrap_intervals`),
    the mean difference, the share of pairs where the cluster was slower, and the blocks' own ratios."""
    import numpy as np

    single, cluster = np.asarray(single_ns, dtype=np.float64) / 1e3, np.asarray(cluster_ns, dtype=np.float64) / 1e3
    out: dict[str, Any] = {
        "p50_ratio": round(float(np.median(cluster) / np.median(single)), 4),
        "median_pair_diff_us": round(float(np.median(cluster - single)), 2),
        "mean_pair_diff_us": round(float(np.mean(cluster - single)), 2),
        "share_pairs_cluster_slower": round(float(np.mean(cluster > single)), 3),
    }
    single_blocks, cluster_blocks = paired_blocks(single, cluster, block)
    out["blocks"] = len(single_blocks)
    measures: dict[str, PairedMeasure] = {
        "p50_ratio_90ci": lambda s, c: float(np.median(c) / np.median(s)),
        "median_pair_diff_90ci_us": lambda s, c: float(np.median(c - s)),
    }
    intervals = block_bootstrap_intervals(single, cluster, block, measures, resamples, seed)
    out.update({name: [round(v, 4 if "ratio" in name else 2) for v in bounds] for name, bounds in intervals.items()})
    if single_blocks:
        ratios = [float(np.median(c) / np.median(s)) for s, c in zip(single_blocks, cluster_blocks, strict=True)]
        out["block_p50_ratios"] = {
            "min": round(min(ratios), 3),
            "median": round(float(np.median(ratios)), 3),
            "max": round(max(ratios), 3),
        }
    return out


def by_position(times: Mapping[str, Sequence[int]], firsts: Sequence[str]) -> dict[str, float | None]:
    """Each arm's p50 (µs) over the pairs where it was called first, and where it was second
    (``None`` when it never was); and the p50 ratio (cluster / single) of the calls made first in
    their pair, which never come straight after the other arm's call of the same pair."""
    import numpy as np

    out: dict[str, float | None] = {}
    for arm in ARMS:
        ns = np.asarray(times[arm], dtype=np.float64)
        first = np.asarray([f == arm for f in firsts], dtype=bool)
        for label, mask in (("first", first), ("second", ~first)):
            out[f"{arm}_{label}_p50_us"] = round(float(np.median(ns[mask])) / 1e3, 1) if mask.any() else None
    single, cluster = out["single_first_p50_us"], out["cluster_first_p50_us"]
    out["first_calls_p50_ratio"] = round(cluster / single, 4) if single and cluster else None
    return out


def measure(
    workload: str, arms: Mapping[str, Arm], labels: Mapping[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """Warm-up, then the timed pairs of one workload on ``arms`` (described by ``labels``); one result."""
    rows, refs = WORKLOADS[workload]
    codes = entity_codes(10_000).to_pylist()
    rng = random.Random(args.seed)
    runs = {arm: functools.partial(arms[arm].time_run, refs) for arm in ARMS}

    def draw() -> Any:
        return draw_rows(rng, codes, rows, args.form)

    interleave(runs, draw, rng, args.warmup, check=check_answers, run=args.run, settle=args.settle)
    for arm in ARMS:  # in one process the second is a cheap no-op: the first froze everything
        arms[arm].settle(args.gc_freeze)
    load_before = os.getloadavg()
    started = time.perf_counter()
    times, firsts = interleave(
        runs, draw, rng, args.pairs, args.duration, check=check_answers, run=args.run, settle=args.settle
    )
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()
    pairs = len(firsts)  # kept calls per arm
    return {
        "workload": f"{workload}-paired",
        "entities": rows,
        "features": len(refs),
        "control": args.control,
        "processes": args.processes,
        "cluster_floor": args.cluster_floor,
        "arms": dict(labels),
        "projects": {arm: arms[arm].project for arm in ARMS},
        "entity_rows": args.form,
        "gc_freeze": args.gc_freeze,
        "built_first": args.build_first,
        "pairs": pairs,
        "run": args.run,
        "settle": args.settle,
        "seconds": round(seconds, 2),
        "cluster_first_share": round(firsts.count("cluster") / pairs, 3),
        "single_us": summarize([t / 1e3 for t in times["single"]], 1),
        "cluster_us": summarize([t / 1e3 for t in times["cluster"]], 1),
        **paired_stats(times["single"], times["cluster"], args.block, args.resamples),
        "by_position": by_position(times, firsts),
        "block_pairs": args.block,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }


class Arm(Protocol):
    """One arm's store, wherever it lives: it times runs of calls and settles its process's GC."""

    @property
    def project(self) -> str:
        """The store's project (its keys are torn down with it)."""
        ...

    def time_run(self, refs: list[str], arguments: list[Any], answer: bool) -> tuple[list[int], Any]:
        """:func:`time_calls` of ``get_online_features(refs, argument)`` per argument (see :data:`RunTimer`)."""
        ...

    def settle(self, freeze: bool) -> None:
        """:func:`settle_gc` in the process that holds the store."""
        ...


@dataclass
class LocalArm:
    """An arm whose store lives in this process."""

    store: Any
    #: ``--cluster-floor``: the store's cluster reads replaced by :class:`~bench.cluster_floor.BareClusterReads`.
    floor: BareClusterReads | None = None

    @property
    def project(self) -> str:
        """See :class:`Arm`."""
        return str(self.store.project)

    def time_run(self, refs: list[str], arguments: list[Any], answer: bool) -> tuple[list[int], Any]:
        """See :class:`Arm` (with a floor, the run's reads are planned first, off the clock)."""
        call = functools.partial(self.store.get_online_features, refs)
        if self.floor is not None:
            self.floor.prepare(call, arguments)
        return time_calls(call, arguments)

    def settle(self, freeze: bool) -> None:
        """See :class:`Arm`."""
        settle_gc(freeze)


@dataclass
class ChildArm:
    """An arm whose store lives in its own child process (``--processes``, :func:`_serve`); every
    request waits for the answer, and a child that dies or stalls raises :class:`ChildFailed`."""

    process: BaseProcess
    conn: Connection
    project: str = ""  # (sent by the child once its store is set up)

    def time_run(self, refs: list[str], arguments: list[Any], answer: bool) -> tuple[list[int], Any]:
        """See :class:`Arm`: the child times the calls; the pipe traffic is outside its clock."""
        times, first = self.ask(("run", refs, arguments, answer), CHILD_RUN_TIMEOUT)
        return times, first

    def settle(self, freeze: bool) -> None:
        """See :class:`Arm`."""
        self.ask(("gc", freeze), CHILD_RUN_TIMEOUT)

    def ask(self, message: tuple[Any, ...] | None, timeout: float) -> Any:
        """Send ``message`` (``None``: nothing) and return the child's reply within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:
            if message is not None:
                self.conn.send(message)
            while not self.conn.poll(0.5):  # blocks in the kernel, wakes as soon as the reply comes
                if not self.process.is_alive():
                    raise EOFError
                if time.monotonic() > deadline:
                    raise ChildFailed(f"{self.process.name} did not answer within {timeout:.0f} s")
            status, payload = self.conn.recv()
        except (EOFError, OSError):  # the child's end is closed (BrokenPipeError on a send)
            self.process.join(5)
            raise ChildFailed(f"{self.process.name} died (exit code {self.process.exitcode})") from None
        if status == "error":
            raise ChildFailed(f"{self.process.name} failed:\n{payload}")
        return payload


class ChildFailed(RuntimeError):
    """An arm's child process died, stalled or raised (its traceback in the message)."""


def _serve(conn: Connection, ticks: Path, backend: str, address: str, rng: random.Random, floor: bool) -> None:
    """A child's life (``--processes``): set up its store as :func:`_store` does, send back ``rng``
    (advanced by the set-up's check, for the next arm's set-up) and the store's project, then answer ``("run", refs,
    arguments, answer)`` with :func:`time_calls`'s nanoseconds (and with ``answer`` a picklable copy
    of the first answer) and ``("gc", freeze)`` with :func:`settle_gc`, until ``None`` or the
    parent's end closes; the store's project is torn down on every way out. Ctrl-C is left to the
    parent, which stops its children; SIGTERM (the parent's last resort) still tears down. ``floor``:
    see :func:`_local`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        with _local(ticks, backend, address, rng, floor) as arm:
            conn.send(("ok", (rng, arm.project)))
            while (message := conn.recv()) is not None:
                reply: Any = None
                if message[0] == "gc":
                    arm.settle(message[1])
                else:
                    _, refs, arguments, answer = message
                    times, first = arm.time_run(refs, arguments, answer)
                    # The answer's raw-record views (struct layouts) do not pickle; check_answers compares the rest.
                    reply = (times, dataclasses.replace(first, records=None, base=None, arms=None) if answer else None)
                conn.send(("ok", reply))
    except EOFError:
        return  # the parent went away; the store was torn down on the way out
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
        raise


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(f"signal {signum}")


@contextlib.contextmanager
def _child(ticks: Path, backend: str, address: str, rng: random.Random, floor: bool = False) -> Iterator[ChildArm]:
    """A :class:`ChildArm` on a fresh store in a spawned child, set up before this returns (``rng``
    advanced as :func:`_store` would have); stopped and its project torn down afterwards."""
    context = multiprocessing.get_context("spawn")
    conn, child_end = context.Pipe()
    process = context.Process(
        target=_serve,
        args=(child_end, ticks, backend, address, rng, floor),
        name=f"w2_paired {backend} child",
        daemon=True,
    )
    process.start()
    child_end.close()  # so that the child's death reads as the end of the pipe
    arm = ChildArm(process, conn)
    try:
        advanced, arm.project = arm.ask(None, CHILD_SETUP_TIMEOUT)
        rng.setstate(advanced.getstate())
        yield arm
    finally:
        with contextlib.suppress(OSError):
            conn.send(None)
        process.join(CHILD_STOP_TIMEOUT)
        if process.is_alive():
            process.terminate()  # SIGTERM: the child still tears its project down
            process.join(CHILD_STOP_TIMEOUT)
        conn.close()


@contextlib.contextmanager
def _local(ticks: Path, backend: str, address: str, rng: random.Random, floor: bool = False) -> Iterator[LocalArm]:
    """A :class:`LocalArm` on a fresh store in this process (:func:`_store`); with ``floor`` (a cluster
    store only) its reads go through :class:`~bench.cluster_floor.BareClusterReads`."""
    with _store(ticks, backend, address, rng) as store:
        bare = BareClusterReads(store) if floor else None
        try:
            yield LocalArm(store, bare)
        finally:
            if bare is not None:
                bare.close()


@contextlib.contextmanager
def _store(ticks: Path, backend: str, address: str, rng: random.Random) -> Iterator[Any]:
    """One :func:`prepared_store` in a throw-away repo with a fresh project, released afterwards."""
    project = f"w2p_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        store = prepared_store(Path(tmp), ticks, backend, address, project, rng)
        try:
            yield store
        finally:
            release_store(store, backend, project)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Set up both arms (and the cluster, unless given), measure each workload; the results."""
    ticks = ensure_ticks(args.data)
    rng = random.Random(args.seed)
    arm_in: Callable[..., contextlib.AbstractContextManager[Arm]] = _child if args.processes else _local
    with contextlib.ExitStack() as stack:
        targets = {"single": ("redis", args.redis)}
        if args.control:
            targets["cluster"] = ("redis", args.redis)
        else:
            nodes = args.redis_nodes
            if not nodes:
                from bench.cluster import local_cluster

                nodes = stack.enter_context(local_cluster())
            targets["cluster"] = ("redis_cluster", nodes)
        # --pin before the arms are built: the child processes of --processes inherit it
        servers = (
            {s for backend, address in targets.values() for s in redis_servers(backend, address)} if args.pin else ()
        )
        pins = stack.enter_context(pinned(args.pin, sorted(servers)))
        arms: dict[str, Arm] = {}
        for arm in build_order(args.build_first):  # the order the control shows a bias of (see the docstring)
            arms[arm] = stack.enter_context(arm_in(ticks, *targets[arm], rng, arm == "cluster" and args.cluster_floor))
        labels = {arm: f"{backend} {address}" for arm, (backend, address) in targets.items()}
        if args.control:
            labels["cluster"] += " (A/A control: a second store, own project)"
        if args.cluster_floor:
            labels["cluster"] += " (floor: routing, framing and reordering done ahead, bench/cluster_floor.py)"
        return [{**measure(workload, arms, labels, args), "pinned": pins} for workload in args.workloads]


def default_build_first(run: int) -> str:
    """The arm set up first by default: the single server's with single calls (the first-built store
    is faster then), the cluster's with runs (the second-built is), so the bias counts against the cluster."""
    return ARMS[0] if run == 1 else ARMS[1]


def build_order(first: str) -> tuple[str, str]:
    """The arms in the order their stores are built, ``first`` first."""
    if first not in ARMS:
        raise ValueError(f"build first one of {ARMS}, not {first!r}")
    return (first, ARMS[1] if first == ARMS[0] else ARMS[0])


def headline(result: Mapping[str, Any]) -> str:
    """One line: both arms' p50, the ratio and the per-pair median difference with their intervals."""
    ci = result.get("p50_ratio_90ci", ["-", "-"])
    diff_ci = result.get("median_pair_diff_90ci_us", ["-", "-"])
    return (
        f"{result['workload']}: single p50 {result['single_us']['median']} µs, "
        f"{'control' if result['control'] else 'cluster'} p50 {result['cluster_us']['median']} µs, "
        f"ratio {result['p50_ratio']:.3f} [90 % {ci[0]}, {ci[1]}], "
        f"pair diff median {result['median_pair_diff_us']} µs [{diff_ci[0]}, {diff_ci[1]}], "
        f"{result['pairs']} pairs, load {result['load_before'][0]}"
    )


def parse_workloads(text: str) -> list[str]:
    """The ``--workloads`` option: a comma list of known workload ids."""
    names = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"workloads are a comma list of {', '.join(WORKLOADS)}; got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="directory of the Parquet files")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="host:port of the single Redis server")
    parser.add_argument(
        "--redis-nodes", default="", help="startup nodes of the Redis Cluster (default: start a local 3-master one)"
    )
    parser.add_argument("--workloads", type=parse_workloads, default=list(WORKLOADS), help="W2a, W2b or W2a,W2b")
    parser.add_argument("--pairs", type=int, default=3000, help="timed pairs (of runs, with --run) per workload")
    parser.add_argument("--duration", type=float, default=None, help="timed seconds per workload, instead of --pairs")
    parser.add_argument("--warmup", type=int, default=300, help="interleaved pairs before, not reported")
    parser.add_argument(
        "--run", type=int, default=1, help="calls per arm in a row within a pair (1: the two calls of a pair alternate)"
    )
    parser.add_argument("--settle", type=int, default=0, help="calls at the start of each run not kept")
    parser.add_argument("--block", type=int, default=100, help="consecutive pairs per bootstrap block")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=42, help="entity and order draws")
    parser.add_argument("--form", choices=["records", "columns"], default="records", help="entity rows' form")
    parser.add_argument(
        "--gc-freeze", action=argparse.BooleanOptionalAction, default=True, help="gc.freeze() after warm-up"
    )
    parser.add_argument("--control", action="store_true", help="A/A: the second arm is a store on the single server")
    parser.add_argument(
        "--build-first",
        choices=(*ARMS, "auto"),
        default="auto",
        help="whose store is set up first (auto: the one the design's bias favours less, see the docstring)",
    )
    parser.add_argument(
        "--processes", action="store_true", help="each arm's store in its own child process (see the docstring)"
    )
    parser.add_argument(
        "--pin",
        type=parse_pin,
        default=None,
        help="CLIENT:SERVERS CPUs for the whole run, e.g. 1:0: no server on the client's CPU (bench/pin.py)",
    )
    parser.add_argument(
        "--cluster-floor",
        action="store_true",
        help="what-if: the cluster's reads cost only their I/O (bench/cluster_floor.py; not with --control)",
    )
    args = parser.parse_args(argv)
    args.build_first = default_build_first(args.run) if args.build_first == "auto" else args.build_first
    if args.cluster_floor and args.control:
        parser.error("--cluster-floor replaces the cluster's reads: there is no cluster with --control")
    if args.pairs < 1 or args.block < 1 or args.warmup < 0 or (args.duration is not None and args.duration <= 0):
        parser.error("--pairs and --block must be at least 1, --warmup at least 0, --duration positive")
    if args.run < 1 or not 0 <= args.settle < args.run:
        parser.error("--run must be at least 1 and --settle between 0 and --run - 1")
    results = run(args)
    for result in results:
        emit(result)
    for result in results:
        print(headline(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
