"""Served-feature logging: sample responses of logged feature services, write them to the offline store.

The request path does little: one cached lookup of the service's logging target (per registry
version), one sampling decision, and the request appended to its service's batch, column by column
(:class:`~.feature_log_table.Batch`) — the store records the response was decoded from (a byte
slice per view) when it has them, else its Python columns. A thread ships the batches to a writer process
(:mod:`.feature_log_writer`, started on first use, one per serving process), which builds the Arrow
tables (:mod:`.feature_log_table`) and appends them to the service's log source every
``flush_interval_secs`` or ``flush_requests`` requests. Converting and writing never take this
process's interpreter lock, so they do not slow its reads (docs/feature-logging.md, "Cost").
A full buffer drops the request and counts it in ``ladle_feature_log_dropped_total``; nothing
ever blocks a read. :meth:`FeatureLogger.close` (the store's ``close``, a server's graceful
shutdown) ships and writes everything.

>>> source = log_source(store, "price_model")          # a DataSource: FeatureView or raw scans
>>> store.get_feature_log("price_model", start, end)   # the rows as an Arrow table
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
import uuid
import weakref
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter, Gauge

from ladle.config import RepoConfig
from ladle.definitions import DataSource, DorisSource, FeatureService, FileSource, IcebergSource
from ladle.definitions.feature_logging import (
    DorisLoggingDestination,
    FileLoggingDestination,
    IcebergLoggingDestination,
)
from ladle.errors import BackendError, DefinitionError
from ladle.monitor.feature_log_budget import CostBudget
from ladle.monitor.feature_log_table import LOG_TIME, Batch, LogLayout, RecordShape
from ladle.monitor.feature_log_writer import WriterProcess, frame

if TYPE_CHECKING:
    from ladle.registry.base import RegistrySnapshot
    from ladle.retrieval.response import OnlineResponse

log = logging.getLogger(__name__)

LOG_ROWS = Counter(
    "ladle_feature_log_rows", "Served-feature log rows written to the offline store.", ["feature_service"]
)
LOG_DROPPED = Counter(
    "ladle_feature_log_dropped",
    "Served-feature log requests dropped (queue full, or the write failed).",
    ["feature_service"],
)
LOG_SCALE = Gauge(
    "ladle_feature_log_sample_scale",
    "Factor the CPU budget applies to every logged service's sample_rate (1: as configured).",
    multiprocess_mode="livemin",
)
LOG_CPU_SHARE = Gauge(
    "ladle_feature_log_cpu_share",
    "Share of one core a serving process's feature logging took, as its CPU budget prices it "
    "(request path, hand-over, writer, indirect cost).",
    multiprocess_mode="livemax",
)
#: Where logs of services without a destination go in a file offline store (relative to the repo).
DEFAULT_LOG_DIR = "data/feature_logs"


class HasRegistry(Protocol):
    """What :func:`log_source` needs of a store (``FeatureStore`` has it)."""

    config: RepoConfig

    def snapshot(self, allow_cache: bool = True) -> RegistrySnapshot:
        """The current definitions."""
        ...


def log_table_name(service_name: str) -> str:
    """The default table (or directory) name of a service's log."""
    return f"feature_log_{service_name}"


def log_source(store_or_config: HasRegistry | RepoConfig, service_name: str | FeatureService) -> DataSource:
    """The offline data source holding the feature log of a service (event time: ``log_time``).

    Usable in a ``FeatureView`` (entities: the service's join keys) for ``get_historical_features``,
    or read raw. The service must declare a ``logging_config``.
    """
    config = store_or_config if isinstance(store_or_config, RepoConfig) else store_or_config.config
    if isinstance(service_name, FeatureService):
        service = service_name
    elif isinstance(store_or_config, RepoConfig):
        from ladle.registry.sql import SqlRegistry

        registry = SqlRegistry(config.registry, config.project, config.repo_path)
        try:
            service = registry.snapshot().feature_service(service_name)
        finally:
            registry.close()
    else:
        service = store_or_config.snapshot().feature_service(service_name)
    return _source_of(config, service)


def _source_of(config: RepoConfig, service: FeatureService) -> DataSource:
    settings = service.logging_config
    if settings is None:
        raise DefinitionError(f"feature service '{service.name}' has no logging_config: nothing is logged")
    name = log_table_name(service.name)
    dest = settings.destination
    kind = config.offline_store.type
    if kind == "iceberg":
        namespace = str(getattr(config.offline_store, "namespace", "ladle"))
        table = dest.table if isinstance(dest, IcebergLoggingDestination) else f"{namespace}.{name}"
        return IcebergSource(table=table, timestamp_field=LOG_TIME, name=name)
    if kind in ("doris", "starrocks", "mysql"):
        if isinstance(dest, DorisLoggingDestination):
            return DorisSource(table=dest.table, database=dest.database, timestamp_field=LOG_TIME, name=name)
        return DorisSource(table=name, timestamp_field=LOG_TIME, name=name)
    path = dest.path if isinstance(dest, FileLoggingDestination) else f"{DEFAULT_LOG_DIR}/{service.name}"
    return FileSource(path=path.rstrip("/") + "/", timestamp_field=LOG_TIME, name=name)


@dataclass(frozen=True)
class _Target:
    """A logged service under one registry version."""

    service: str
    source: DataSource
    layout: LogLayout
    rate: float
    deterministic: bool
    width: int  # columns of a response: the join keys, then the features


class FeatureLogger:
    """Samples served responses and hands them to a log writer process (one per serving process).

    The request path appends a sampled request to its service's batch: the store records the
    response came from (the usual read: a slice of bytes per view), or else its Python columns.
    A background thread pickles the batches into frames and ships them to the writer's pipe when
    :data:`_SHIP_AT_REQUESTS` requests wait or the oldest has waited :data:`_SHIP_MAX_SECONDS`; the writer
    (:mod:`ladle.monitor.feature_log_writer`, a child process started on first use) builds the Arrow
    tables and writes them, so no conversion or write ever holds this process's GIL. A full buffer
    (the writer gone or far behind) drops the request and counts it in
    ``ladle_feature_log_dropped_total``; a read never waits. :meth:`flush` waits until the writer
    has written everything sent; :meth:`close` (the store's, a server's graceful drain) flushes and
    stops the writer, which also writes what it holds if this process dies.
    """

    def __init__(self, config: RepoConfig) -> None:
        self.config = config
        self.settings = config.feature_server.feature_logging
        self._targets: dict[tuple[int, str], _Target | None] = {}
        self._capacity = self.settings.queue_capacity
        self._ids = itertools.count()
        self._id_prefix = f"{uuid.uuid4().hex[:12]}-"
        self._random = random.random
        self._clock = time.time
        self._reset()
        self.written = 0
        self.written_requests = 0
        self.dropped = 0
        ref = weakref.WeakMethod(self._reset)
        os.register_at_fork(after_in_child=lambda: _call(ref))

    def _reset(self) -> None:
        """No batches, writer or shipper (at start, and in a forked child: each process has its own)."""
        #: Requests since the last hand-over, per (target, record shape or None for Python columns).
        self._batches: dict[tuple[int, Any], tuple[_Target, Batch]] = {}
        self._buffered = 0  # requests in the batches and in the unsent part of the buffer
        self._lock = threading.Lock()  # the batches: requests may come from several threads
        self._buffer = bytearray()  # frames not yet taken by the pipe
        self._frames: deque[tuple[int, int]] = deque()  # per batch frame in it: (its end, its requests)
        #: What the writer knows: id(target) or a shape key -> (its number, the object, kept alive
        #: so that its id stays unique). Numbers are never reused, even across writers.
        self._declared: dict[Any, tuple[int, Any]] = {}
        self._shapes: dict[tuple[Any, ...], tuple[RecordShape, list[Any]]] = {}
        self._numbers = itertools.count()
        self._writer: WriterProcess | None = None
        self._ship_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handed_at = time.monotonic()  # the last hand-over of batches (the shipper paces them)
        #: The CPU budget (docs/feature-logging.md, "The CPU budget"); its counters move under _lock.
        self.budget = CostBudget(self.settings.cpu_budget, flush_interval=self.settings.flush_interval_secs)

    def new_request_id(self) -> str:
        """A request id unique across processes (a random per-process prefix and a counter)."""
        return self._id_prefix + str(next(self._ids))

    # -- the request path ------------------------------------------------------------------------
    def target(self, snapshot: RegistrySnapshot, service: str) -> _Target | None:
        """The logging target of ``service`` under ``snapshot`` (None if it does not log); cached."""
        key = (snapshot.version, service)
        try:
            return self._targets[key]
        except KeyError:
            pass
        found = self._resolve(snapshot, service)
        if len(self._targets) > 1024:
            self._targets.clear()
        self._targets[key] = found
        return found

    def _resolve(self, snapshot: RegistrySnapshot, name: str) -> _Target | None:
        from ladle.definitions.refs import resolve

        if not self.settings.enabled:
            return None
        service = snapshot.feature_services.get(name)
        if service is None or service.logging_config is None:
            return None
        layout = LogLayout.of(resolve(snapshot, service, True))
        cfg = service.logging_config
        source = _source_of(self.config, service)
        return _Target(name, source, layout, cfg.sample_rate, cfg.deterministic, layout.width)

    def log(
        self, snapshot: RegistrySnapshot, service: str, response: OnlineResponse, request_id: str | None = None
    ) -> str | None:
        """Log ``response`` if ``service`` logs and the request is sampled; returns the request id
        used (generated when not given) or None when nothing is logged. Never blocks, never raises.

        A split (A/B) read is logged arm by arm, each into its arm service's log (if that service
        logs) with the ``variant`` column set.
        """
        arms = response.arms
        if arms is not None:
            for _, arm_service, arm_response in arms:
                request_id = self._log_one(snapshot, arm_service, arm_response, request_id) or request_id
            return request_id
        return self._log_one(snapshot, service, response, request_id)

    def _log_one(
        self, snapshot: RegistrySnapshot, service: str, response: OnlineResponse, request_id: str | None
    ) -> str | None:
        target = self._targets.get((snapshot.version, service), _UNKNOWN)
        if target is _UNKNOWN:
            target = self.target(snapshot, service)
        if target is None:
            return None
        assert isinstance(target, _Target)
        started = time.perf_counter_ns()
        if request_id is None:
            request_id = self._id_prefix + str(next(self._ids))
        budget = self.budget
        rate = target.rate * budget.scale
        if rate < 1.0:
            draw = zlib.crc32(request_id.encode()) / 4294967296.0 if target.deterministic else self._random()
            if draw >= rate:
                return request_id
        if self._buffered >= self._capacity or len(response.values) != target.width:
            LOG_DROPPED.labels(feature_service=service).inc()
            self.dropped += 1
            return request_id
        records = response.records
        # A shape is a plan's reads over their record layouts (both kept alive in _shapes, so ids stay unique).
        if records is None:
            shape_key: Any = None
        elif len(records) == 1:  # the usual read: one view
            shape_key = (id(records[0][0]), id(records[0][1][0]))
        else:
            shape_key = tuple([(id(read), id(raw[0])) for read, raw in records])
        when = self._clock()
        with self._lock:
            held = self._batches.get((id(target), shape_key))
            if held is None:
                held = self._batches[(id(target), shape_key)] = (target, self._new_batch(target, shape_key, records))
            if records is None:
                held[1].add_values(request_id, when, response, rate)
            else:
                held[1].add_records(request_id, when, response, rate)
            self._buffered += 1
            if budget.logged(len(response.values[0])):
                budget.timed(time.perf_counter_ns() - started)
        if self._thread is None:
            self._start()
        return request_id

    def _new_batch(self, target: _Target, shape_key: tuple[Any, ...] | None, records: Any) -> Batch:
        keys = [name for name, _ in target.layout.keys]
        if shape_key is None:
            return Batch(keys, len(target.layout.features), None)
        known = self._shapes.get(shape_key)
        if known is None:
            known = self._shapes[shape_key] = (RecordShape.of(records), [(read, raw[0]) for read, raw in records])
        return Batch(keys, len(target.layout.features), known[0])

    # -- shipping to the writer ------------------------------------------------------------------
    def _start(self) -> None:
        with self._ship_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ladle-feature-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(_SHIP_SECONDS):
            try:
                if self._due():
                    self._ship()
                self._account(self._progress())
                with self._lock:
                    closed = self.budget.tick(time.thread_time())
                if closed:
                    LOG_SCALE.set(self.budget.scale)
                    LOG_CPU_SHARE.set(self.budget.measured or 0.0)
            except Exception:  # the shipper must survive; what could not be shipped is counted dropped
                log.exception("feature log: shipping to the writer failed")

    def _due(self) -> bool:
        """Whether the shipper should hand over now: bytes are still waiting for the pipe, or
        :data:`_SHIP_AT_REQUESTS` requests wait, or the oldest batch is :data:`_SHIP_MAX_SECONDS` old
        (or the writer died: checked at every hand-over)."""
        if self._buffer:
            return True
        if not self._batches:
            return False
        return self._buffered >= _SHIP_AT_REQUESTS or time.monotonic() - self._handed_at >= _SHIP_MAX_SECONDS

    def _take_batches(self) -> None:
        """Move the batches into the buffer as writer frames (declaring new targets and shapes)."""
        with self._lock:
            batches, self._batches = self._batches, {}
        self._handed_at = time.monotonic()
        for (_, shape_key), (target, batch) in batches.items():
            declared = self._declared.get(id(target))
            if declared is None:
                declared = self._declared[id(target)] = (next(self._numbers), target)
                self._buffer += frame(("target", declared[0], target.service, target.source, target.layout))
            shape_number = None
            if shape_key is not None:
                shape = self._declared.get(shape_key)
                if shape is None:
                    shape = self._declared[shape_key] = (next(self._numbers), self._shapes[shape_key])
                    self._buffer += frame(("shape", shape[0], batch.shape))
                shape_number = shape[0]
                batch.shape = None  # the writer has it by number
            self._buffer += frame(("batch", declared[0], shape_number, batch))
            self._frames.append((len(self._buffer), len(batch)))

    def _ship(self, wait: bool = False) -> None:
        """Hand the batches to the writer's pipe, as much as fits now (all of it with ``wait``)."""
        if not self._ship_lock.acquire(blocking=wait):
            return
        try:
            writer = self._writer
            if writer is not None and not writer.alive():
                # The rest of the buffer may start inside a frame and name targets only the lost
                # writer knew: it is dropped (and counted), and everything is declared again.
                log.error("feature log writer exited with %s; starting another", writer.returncode())
                lost = sum(requests for _, requests in self._frames)
                with self._lock:
                    self._buffered -= lost
                LOG_DROPPED.labels(feature_service="").inc(lost)
                self.dropped += lost
                self._buffer.clear()
                self._frames.clear()
                self._declared.clear()
                self._writer = writer = None
            if self._batches:
                self._take_batches()
            if not self._buffer:
                return
            if writer is None:
                writer = self._writer = WriterProcess.start(self.config)
                with self._lock:
                    self.budget.writer_started()
            sent = writer.send(self._buffer, wait)
            del self._buffer[:sent]
            handed = 0
            frames = self._frames
            while frames and frames[0][0] <= sent:
                handed += frames.popleft()[1]
            for i, (end, requests) in enumerate(frames):
                frames[i] = (end - sent, requests)
            with self._lock:
                self._buffered -= handed
        finally:
            self._ship_lock.release()

    def _progress(self) -> list[tuple[str, str, int]]:
        """The writer's reports so far; read under the ship lock, which a flush holds while it
        waits for its answer (so the answer is never taken here)."""
        if not self._ship_lock.acquire(blocking=False):
            return []
        try:
            return self._writer.progress() if self._writer is not None else []
        finally:
            self._ship_lock.release()

    def _account(self, events: list[tuple[str, str, int]]) -> None:
        for kind, service, count in events:
            if kind == "written":
                LOG_ROWS.labels(feature_service=service).inc(count)
                self.written += count
            elif kind == "requests":
                self.written_requests += count
            elif kind == "cpu":  # the writer's CPU so far, in microseconds, after a write
                with self._lock:
                    self.budget.writer_cpu(count / 1e6, self.written_requests, self.written)
            else:
                LOG_DROPPED.labels(feature_service=service).inc(count)
                self.dropped += count

    def flush(self) -> int:
        """Ship everything buffered and wait until the writer has written it; returns the rows
        written meanwhile (the writer's own count). Raises if the last write failed."""
        if not self._buffered and self._writer is None:
            return 0
        self._ship(wait=True)
        writer = self._writer
        if writer is None:
            return 0
        with self._ship_lock:
            events, error = writer.flush()
        self._account(events)
        if error:
            raise BackendError(f"feature log write failed: {error}")
        return sum(count for kind, _, count in events if kind == "written")

    def close(self) -> None:
        """Stop shipping, write what is buffered and stop the writer (graceful shutdown)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout=5)
        try:
            self._ship(wait=True)
        finally:
            writer, self._writer = self._writer, None
            if writer is not None:
                self._account(writer.close())


_UNKNOWN = object()
#: The shipper looks this often whether a hand-over is due (the request path never ships: a pipe
#: write, and a check that the writer is alive, cost more than a request's whole logging).
_SHIP_SECONDS = 0.05
#: A hand-over is due when this many requests wait (it bounds how long one holds the interpreter
#: lock: ~0.8 us per one-entity request pickled)...
_SHIP_AT_REQUESTS = 256
#: ... or when the oldest waiting batch is this old. Handing over every 50 ms whatever the traffic
#: woke the writer process 20 times a second; at one connection (W3a) the cost did not follow the
#: share of requests logged, as a cost per hand-over would not (docs/feature-logging.md, "Cost").
_SHIP_MAX_SECONDS = 1.0


def _call(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()
