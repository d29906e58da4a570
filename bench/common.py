"""Shared benchmark plumbing: machine description, memory, timing statistics, output.

Every benchmark prints one JSON object per workload on stdout (last line) and a readable table
on stderr, with the machine and the exact command, so a figure can always be traced back::

    from bench.common import Timer, emit, machine_info, peak_rss_mb, summarize

    with Timer() as t:
        work()
    emit({"workload": "W4", "wall_s": t.seconds, "peak_rss_mb": peak_rss_mb()})

Peak RSS is per process (``getrusage``); measure in a child process (:func:`run_child`) when the
parent did other work first (data generation, correctness checks).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

DEFAULT_PACKAGES = ("ladle", "duckdb", "pyarrow", "pandas", "numpy")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``"-"`` when missing)."""
    out: dict[str, str] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def machine_info(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """nproc, CPU model, memory, OS, Python and package versions, load average at the call."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    mem_gb = 0.0
    with contextlib.suppress(ValueError, OSError):
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": usable,
        "cpu_model": cpu_model(),
        "mem_gb": round(mem_gb, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions(packages),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    On Linux ``VmHWM`` of ``/proc/self/status``: the high-water mark of this program's own memory.
    ``ru_maxrss`` is not used there because Linux carries the forking parent's high-water mark
    across ``exec`` into it, so a child started by a large parent reported the parent's peak.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024 if sys.platform != "darwin" else kb / 2**20, 1)


def rss_mb() -> float:
    """Current resident set size, in MB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def redis_servers(backend: str, address: str) -> list[tuple[str, int]]:
    """The Redis servers behind a bench's ``--redis`` address, as ``(host, port)``.

    ``redis``: the one ``host:port``. ``redis_cluster``: every node (masters and replicas) that the
    first startup node of the comma list names in ``CLUSTER NODES``. Anything else: none.
    """
    if backend not in ("redis", "redis_cluster"):
        return []
    host, port = address.split(",", maxsplit=1)[0].strip().rsplit(":", 1)
    if backend == "redis":
        return [(host, int(port))]
    import redis

    with redis.Redis(host=host, port=int(port)) as client:
        nodes = client.execute_command("CLUSTER NODES")
    return [(h, int(p)) for h, p in (name.rsplit(":", 1) for name in nodes)]


def redis_cpu_s(servers: Sequence[tuple[str, int]]) -> float:
    """CPU seconds (user + sys, ``INFO cpu``, all threads) the ``servers`` have used so far, summed."""
    import redis

    total = 0.0
    for host, port in servers:
        with redis.Redis(host=host, port=port) as client:
            info = client.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


class CpuMeter:
    """CPU used during a block: this process's user and system time, and some Redis servers' total.

        with CpuMeter(redis_servers("redis", "127.0.0.1:6391")) as cpu:
            work()
        cpu.per_call(1000)   # {"client_user_us": ..., "client_sys_us": ..., "servers_us": ...}

    The servers' figure comes from ``INFO cpu`` before and after (so it includes whatever else they
    served meanwhile); the process's from ``getrusage`` (tick-sampled on some kernels: use many calls).
    """

    def __init__(self, servers: Sequence[tuple[str, int]] = ()) -> None:
        self.servers = list(servers)
        self.user = self.sys = self.server = 0.0

    def __enter__(self) -> CpuMeter:
        self._server0 = redis_cpu_s(self.servers) if self.servers else 0.0
        self._usage0 = resource.getrusage(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc: object) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.user = usage.ru_utime - self._usage0.ru_utime
        self.sys = usage.ru_stime - self._usage0.ru_stime
        self.server = (redis_cpu_s(self.servers) - self._server0) if self.servers else 0.0

    def per_call(self, calls: int) -> dict[str, float | None]:
        """Each figure in µs per call (``servers_us`` is None when no server was measured)."""
        scale = 1e6 / max(calls, 1)
        return {
            "client_user_us": round(self.user * scale, 1),
            "client_sys_us": round(self.sys * scale, 1),
            "servers_us": round(self.server * scale, 1) if self.servers else None,
        }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (Linux /proc)."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else math.nan


def summarize(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    """min, median, p99, mean and max of ``values``, rounded."""
    if not values:
        return {}
    return {
        "n": len(values),
        "min": round(min(values), digits),
        "median": round(median(values), digits),
        "p99": round(percentile(values, 99), digits),
        "mean": round(statistics.fmean(values), digits),
        "max": round(max(values), digits),
    }


def paired_blocks(
    first: Sequence[float] | NDArray[np.float64], second: Sequence[float] | NDArray[np.float64], block: int
) -> tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]:
    """Two paired series (``first[i]`` and ``second[i]`` measured together) cut into ``len // block``
    runs of consecutive pairs, about ``block`` pairs each, every pair in one (none below one block)."""
    import numpy as np

    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired series must be 1-D and of one length, got {a.shape} and {b.shape}")
    if block < 1:
        raise ValueError(f"block must be at least 1 pair, got {block}")
    count = len(a) // block
    if count < 1:
        return [], []
    return list(np.array_split(a, count)), list(np.array_split(b, count))


PairedMeasure = Callable[["NDArray[np.float64]", "NDArray[np.float64]"], float]


def block_bootstrap_intervals(
    first: Sequence[float] | NDArray[np.float64],
    second: Sequence[float] | NDArray[np.float64],
    block: int,
    measures: Mapping[str, PairedMeasure],
    resamples: int = 2000,
    seed: int = 1,
    level: float = 90.0,
) -> dict[str, list[float]]:
    """A ``level`` % percentile interval ``[low, high]`` of each paired measure, by the block bootstrap.

    The pairs are cut into blocks of consecutive pairs (:func:`paired_blocks`); each resample draws
    as many blocks with replacement and evaluates every measure ``f(first, second)`` on the same
    draw. Resampling whole blocks keeps a slow drift of the machine inside a block, so the interval
    is not made too narrow by treating drifting pairs as independent. Empty with fewer than 2 blocks.

        block_bootstrap_intervals(a, b, 100, {"ratio": lambda x, y: float(np.median(y) / np.median(x))})
    """
    import numpy as np

    first_blocks, second_blocks = paired_blocks(first, second, block)
    count = len(first_blocks)
    if count < 2:
        return {}
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(resamples) for name in measures}
    for i in range(resamples):
        pick = rng.integers(0, count, count)
        a = np.concatenate([first_blocks[j] for j in pick])
        b = np.concatenate([second_blocks[j] for j in pick])
        for name, measure in measures.items():
            draws[name][i] = measure(a, b)
    tail = (100 - level) / 2
    return {name: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for name, v in draws.items()}


class Timer:
    """Wall-clock timer: ``with Timer() as t: ...; t.seconds``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.seconds = time.perf_counter() - self.started


def command_line() -> str:
    """The command that started this process, as typed."""
    return " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), "-m", _module(), *sys.argv[1:]])


def _module() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else sys.argv[0]


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, (list, tuple)) and len(value) > 8:
        out.append((prefix, f"[{len(value)} values]"))
    else:
        out.append((prefix, str(value)))


def table(result: Mapping[str, Any]) -> str:
    """A two-column, human-readable rendering of a (nested) result."""
    rows: list[tuple[str, str]] = []
    _flatten("", result, rows)
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def emit(result: Mapping[str, Any], machine: bool = True) -> None:
    """Print ``result`` (plus the machine and command) as a table on stderr and one JSON line on stdout."""
    full = dict(result)
    if machine:
        full.setdefault("machine", machine_info())
        full.setdefault("command", command_line())
    print(table(full), file=sys.stderr)
    print(json.dumps(full, default=str), flush=True)


def run_child(module: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process; return the JSON object it printed last.

    Use it to measure peak RSS and cold-start time of one piece of work in isolation.
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{module} printed no JSON result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
