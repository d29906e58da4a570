"""The Ray engine (``batch_engine: ray``): materialization and backfills as entity-hash tasks on Ray.

A view's window is cut into contiguous ranges of entity-hash buckets (:mod:`ladle.offline.hashing`,
the buckets of local chunked materialization); each range is one Ray task that opens its own
offline and online stores from the :class:`~ladle.config.RepoConfig`, pulls the newest row per
entity of its range (``PartitionedPull.pull_latest_range``: stream views computed from raw events
read their range's events in ``[start - max_window, end]``) and writes them online, in parallel
with the other tasks. The driver records the run and moves the watermark once, after every task
succeeded (:class:`~ladle.materialize.local.Materializer` does that part, unchanged).

Retries: a task whose worker dies is re-run by Ray up to ``max_retries`` times. Re-running a range
is idempotent: the online store keeps the newest event per entity, so rows written by the failed
attempt are equal to, or older than, what the retry writes; nothing is counted twice in the
watermark because the driver records it once. Historical retrieval on Ray: :mod:`.ray_retrieval`.

>>> engine = RayEngine(config)            # config.batch_engine.type == "ray"
>>> RayMaterializer(registry, offline, online, "proj", 50_000, engine=engine).materialize(start, end)
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ladle.config import BatchEngineConfig, RepoConfig, parse_size
from ladle.definitions import FeatureView, StreamFeatureView
from ladle.errors import ConfigError, MissingExtraError
from ladle.materialize.local import Materializer
from ladle.offline.hashing import BUCKETS, HashRange

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore

log = logging.getLogger(__name__)

#: Called in the task after each batch it wrote (tests use it to kill a worker mid-run).
BatchHook = Callable[[HashRange, int], None]


@dataclass(frozen=True)
class TaskReport:
    """What one task did: its range, rows, seconds and the worker process."""

    part: HashRange
    rows_read: int
    rows_written: int
    seconds: float
    pid: int
    peak_rss_mb: float


class RayEngine:
    """A connection to a Ray cluster (started or joined on first use) and the task sizes."""

    def __init__(self, config: RepoConfig, settings: BatchEngineConfig | None = None) -> None:
        self.config = config
        self.settings = settings or config.batch_engine
        self._started = False

    def connect(self) -> Any:
        """The ``ray`` module, initialized: joins ``address`` or starts a local Ray (ConfigError if it cannot)."""
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is in the dev environment
            raise MissingExtraError("ray batch engine", "ray", "ray") from exc
        if ray.is_initialized():
            return ray
        s = self.settings
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if s.address is not None:
            kwargs["address"] = s.address
        else:
            if s.num_cpus is not None:
                kwargs["num_cpus"] = s.num_cpus
            if s.object_store_memory is not None:
                kwargs["object_store_memory"] = parse_size(s.object_store_memory)
        if s.address not in (None, "auto", "local"):
            _check_reachable(s.address)
        try:
            ray.init(**kwargs)
        except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError... by cause
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"batch_engine: cannot reach the Ray cluster at {s.address!r}: {first}") from None
        self._started = s.address is None
        return ray

    def close(self) -> None:
        """Stop the local Ray this engine started; a cluster joined by address is left running."""
        if self._started:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop the local Ray this engine started (a joined cluster is only disconnected from)."""
        import ray

        if ray.is_initialized():
            ray.shutdown()
        self._started = False

    def partitions(self, ray: Any) -> int:
        """Tasks per view: ``partitions``, else two per CPU of the cluster."""
        if self.settings.partitions:
            return self.settings.partitions
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return max(1, 2 * cpus)

    def materialize_view(
        self, project: str, view: FeatureView, start: datetime, end: datetime, batch_rows: int, hook: BatchHook | None
    ) -> list[TaskReport]:
        """Run the view's window as one task per hash range; every task's report (raises if one failed for good)."""
        ray = self.connect()
        k = self.partitions(ray) if view.join_keys else 1
        ranges = split(k)
        task = ray.remote(_materialize_range).options(max_retries=self.settings.max_retries, num_cpus=1)
        portable = _portable(view)
        refs = [task.remote(self.config, project, portable, start, end, part, batch_rows, hook) for part in ranges]
        reports: list[TaskReport] = ray.get(refs)
        return reports


def _check_reachable(address: str) -> None:
    """ConfigError (one line) unless ``address`` (``ray://host:port`` or ``host:port``) accepts TCP connections:
    Ray's own client would retry for ~30 s before saying so."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"batch_engine.address {address!r}: write 'auto', 'ray://host:port' or 'host:port'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError(f"batch_engine: cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}") from None


def split(k: int, buckets: int = BUCKETS) -> list[HashRange]:
    """``k`` contiguous bucket ranges covering every bucket (sizes differ by one at most)."""
    k = max(1, min(k, buckets))
    edges = [buckets * i // k for i in range(k + 1)]
    return [HashRange(buckets, lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]


def _portable(view: FeatureView) -> FeatureView:
    """The view without live transform functions (a worker binds them from the repo: functions of repo
    modules cannot be pickled by reference into another process)."""
    if not isinstance(view, StreamFeatureView):
        return view
    clone = copy.copy(view)
    for name in ("udf", "derive"):
        fn = getattr(view, name, None)
        if fn is not None and getattr(fn, "fn", None) is not None:
            clone.__dict__[name] = dataclasses.replace(fn, fn=None)
    return clone


def bound(view: FeatureView, config: RepoConfig) -> FeatureView:
    """The view with its transforms bound from the repo (in a worker)."""
    from ladle.repo.bind import bind_views

    return bind_views([view], config.repo_path)[0]


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _materialize_range(
    config: RepoConfig,
    project: str,
    view: FeatureView,
    start: datetime,
    end: datetime,
    part: HashRange,
    batch_rows: int,
    hook: BatchHook | None,
) -> TaskReport:
    """One Ray task: the newest rows of ``part`` pulled and written online from this worker."""
    from ladle.materialize.partitions import partitioned_pull
    from ladle.offline.base import open_offline_store
    from ladle.online.base import BatchWriter, open_online_store

    began = time.perf_counter()
    view = bound(view, config)
    offline = open_offline_store(config)
    online = open_online_store(config)
    read = 0
    try:
        batches = _range_batches(offline, partitioned_pull(offline), view, start, end, part, batch_rows)

        def tables() -> Iterator[pa.Table]:
            nonlocal read
            for n, batch in enumerate(batches):
                if batch.num_rows:
                    read += batch.num_rows
                    yield pa.Table.from_batches([batch])
                    if hook is not None:
                        hook(part, n)

        if isinstance(online, BatchWriter):
            written = online.write_batches(project, view, tables())
        else:
            written = sum(online.write(project, view, t) for t in tables())
    finally:
        close = getattr(online, "close", None)
        if callable(close):
            close()
        close = getattr(offline, "close", None)
        if callable(close):
            close()
    return TaskReport(part, read, written, time.perf_counter() - began, os.getpid(), _peak_rss_mb())


def _range_batches(
    offline: OfflineStore,
    ranged: Any,
    view: FeatureView,
    start: datetime,
    end: datetime,
    part: HashRange,
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    if part.whole or ranged is None:
        if not part.whole:  # a store without range pulls: only the first range's task reads, the rest write nothing
            return iter(()) if part.lo > 0 else offline.pull_latest(view, start, end, batch_rows=batch_rows)
        return offline.pull_latest(view, start, end, batch_rows=batch_rows)
    batches: Iterator[pa.RecordBatch] = ranged.pull_latest_range(view, start, end, part, batch_rows)
    return batches


@dataclass(frozen=True)
class RayMaterializer(Materializer):
    """:class:`Materializer` whose load step runs as Ray tasks (the watermark is still recorded here, once)."""

    engine: RayEngine | None = None
    #: test hook run in each task after each written batch
    hook: BatchHook | None = None
    #: the task reports of the last view loaded (for benchmarks)
    reports: list[TaskReport] = dataclasses.field(default_factory=list)

    def _load(self, view: FeatureView, start: datetime, end: datetime, bar: Any) -> tuple[int, int]:
        if self.engine is None:
            raise ConfigError("RayMaterializer needs a RayEngine")
        reports = self.engine.materialize_view(self.project, view, start, end, self.batch_rows, self.hook)
        self.reports[:] = reports
        read = sum(r.rows_read for r in reports)
        bar.update(read)
        return read, sum(r.rows_written for r in reports)
