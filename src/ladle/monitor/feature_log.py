"""Served-feature logging: sample responses of logged feature services, write them to the offline store.

The request path does an O(1) amount of work: one cached lookup of the service's logging target
(per registry version), one sampling decision and one ``deque.append`` of references to the response's
already-built column lists. A daemon thread (started on first use, one per process, so each server
worker flushes its own) drains the queue every ``flush_interval_secs`` or as soon as ``flush_requests``
requests wait, builds Arrow tables (:mod:`.feature_log_table`) and appends them to the service's log
source through the offline store's ``append``. A full queue drops the request and counts it in
``ladle_feature_log_dropped_total``; nothing ever blocks a read. :meth:`FeatureLogger.close` (the
store's ``close``, a server's graceful shutdown) flushes what is queued.

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

from prometheus_client import Counter

from ladle.config import RepoConfig
from ladle.definitions import DataSource, DorisSource, FeatureService, FileSource, IcebergSource
from ladle.definitions.feature_logging import (
    DorisLoggingDestination,
    FileLoggingDestination,
    IcebergLoggingDestination,
)
from ladle.errors import DefinitionError
from ladle.monitor.feature_log_table import (
    LOG_TIME,
    REQUEST_ID,
    STATUS_SUFFIX,
    VARIANT,
    Entry,
    LogLayout,
    build_table,
)

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore
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


class FeatureLogger:
    """Queues sampled responses and flushes them in a background thread (one per process).

    ``offline`` returns the offline store (called in the flusher only); ``settings`` is the
    ``feature_server.feature_logging`` block.
    """

    def __init__(self, config: RepoConfig, offline: Callable[[], OfflineStore]) -> None:
        self.config = config
        self.settings = config.feature_server.feature_logging
        self._offline = offline
        self._targets: dict[tuple[int, str], _Target | None] = {}
        self._capacity = self.settings.queue_capacity
        self._flush_at = self.settings.flush_requests
        self._ids = itertools.count()
        self._id_prefix = f"{uuid.uuid4().hex[:12]}-"
        self._random = random.random
        self._clock = time.time
        self._lock = threading.Lock()  # one flush at a time (the thread, or flush() from a caller)
        self._reset()
        self.written = 0
        self.dropped = 0
        ref = weakref.WeakMethod(self._reset)
        os.register_at_fork(after_in_child=lambda: _call(ref))

    def _reset(self) -> None:
        """A fresh queue and no flusher (at start, and in a forked child: each process flushes its own)."""
        self._queue: deque[tuple[_Target, str, float, OnlineResponse]] = deque()
        #: Converted, not yet written: per target, its tables and the number of requests in them.
        self._pending: dict[int, tuple[_Target, list[Any], list[int]]] = {}
        self._pending_requests = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

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
        return _Target(name, _source_of(self.config, service), layout, cfg.sample_rate, cfg.deterministic)

    def log(
        self, snapshot: RegistrySnapshot, service: str, response: OnlineResponse, request_id: str | None = None
    ) -> str | None:
        """Queue ``response`` if ``service`` logs and the request is sampled; returns the request id
        used (generated when not given) or None when nothing is logged. Never blocks, never raises.

        The work is a cached lookup, a sampling decision and one append of a tuple referencing the
        response: everything else happens in the flusher. A split (A/B) read is logged arm by arm,
        each into its arm service's log (if that service logs) with the ``variant`` column set.
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
        if request_id is None:
            request_id = self._id_prefix + str(next(self._ids))
        if target.rate < 1.0:
            draw = zlib.crc32(request_id.encode()) / 4294967296.0 if target.deterministic else self._random()
            if draw >= target.rate:
                return request_id
        queue = self._queue
        if len(queue) >= self._capacity:
            LOG_DROPPED.labels(feature_service=service).inc()
            self.dropped += 1
            return request_id
        queue.append((target, request_id, self._clock(), response))
        if self._thread is None:
            self._start()
        elif len(queue) == _CONVERT_REQUESTS:
            self._wake.set()
        return request_id

    # -- the flusher -----------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ladle-feature-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        interval = self.settings.flush_interval_secs
        last_write = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(min(interval, _CONVERT_SECONDS))
            self._wake.clear()
            try:
                with self._lock:
                    self._convert()
                    if time.monotonic() - last_write >= interval or self._pending_requests >= self._flush_at:
                        last_write = time.monotonic()
                        self._write_pending()
            except Exception:  # the flusher must survive a bad write; the rows are counted as dropped
                log.exception("feature log flush failed")

    def flush(self) -> int:
        """Convert and write everything queued now; returns the rows written."""
        with self._lock:
            self._convert()
            return self._write_pending()

    def _convert(self) -> None:
        """Turn queued responses into Arrow tables now (called with the lock held).

        Done every :data:`_CONVERT_SECONDS` or :data:`_CONVERT_REQUESTS` requests, well before a write:
        responses held in the queue are Python containers the cyclic GC walks on every full
        collection, so holding seconds of them costs the request path more than converting them.
        Conversion holds the GIL, so it runs in slices with a yield between them: an event loop waits
        at most one slice, not Python's 5 ms switch interval.
        """
        queue = self._queue
        groups: dict[int, tuple[_Target, list[Entry]]] = {}
        for _ in range(len(queue)):  # popleft is atomic: the request path may append meanwhile
            target, request_id, when, response = queue.popleft()
            groups.setdefault(id(target), (target, []))[1].append((request_id, when, response))
        for key, (target, entries) in groups.items():
            tables = self._pending.setdefault(key, (target, [], [0]))
            for start in range(0, len(entries), _SLICE):
                part = entries[start : start + _SLICE]
                tables[1].append(build_table(target.layout, part))
                tables[2][0] += len(part)
                self._pending_requests += len(part)
                time.sleep(0)

    def _write_pending(self) -> int:
        """Write the converted tables, one batch per service (called with the lock held)."""
        import pyarrow as pa

        pending, self._pending = self._pending, {}
        self._pending_requests = 0
        written = 0
        failed: Exception | None = None
        for target, tables, (requests,) in pending.values():
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            if table.num_rows == 0:
                continue
            try:
                rows = write_log(self._offline(), self.config, target.source, table)
            except Exception as exc:
                LOG_DROPPED.labels(feature_service=target.service).inc(requests)
                self.dropped += requests
                failed = exc
                continue
            LOG_ROWS.labels(feature_service=target.service).inc(rows)
            self.written += rows
            written += rows
        if failed is not None:
            raise failed
        return written

    def close(self) -> None:
        """Stop the flusher and write what is queued (graceful shutdown)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout=30)
        if self._queue or self._pending:
            self.flush()


_UNKNOWN = object()
#: Requests converted to Arrow at a time by the flusher (it yields the GIL between slices).
_SLICE = 256
#: The flusher converts queued responses at least this often, or as soon as this many wait.
_CONVERT_SECONDS = 0.1
_CONVERT_REQUESTS = 512


def _write_file(config: RepoConfig, source: FileSource, table: Any) -> int:
    import pyarrow.parquet as pq

    from ladle.offline.sources import SourceLocation

    root = SourceLocation.of(source, config.repo_path).root
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    final = root / f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = root / f".{final.name}.tmp"
    try:
        # Dictionary pages only for the low-cardinality text columns: on float columns they cost more
        # than they save (a third of the write time of a 100-entity request).
        # Statistics (row-group pruning) only for the columns logs are filtered by: id, time, variant, keys.
        low = [f.name for f in table.schema if f.name in (REQUEST_ID, VARIANT) or f.name.endswith(STATUS_SUFFIX)]
        filtered = [f.name for f in table.schema if "__" not in f.name]
        pq.write_table(table, tmp, use_dictionary=low, write_statistics=filtered)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return int(table.num_rows)


def _call(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()


def write_log(offline: OfflineStore, config: RepoConfig, source: DataSource, table: Any) -> int:
    """Append log rows to ``source``: its offline store's ``append`` (creating the table first on
    MySQL-protocol stores), or for Parquet one new file written directly.

    Parquet logs skip the DuckDB store's ``append`` on purpose: it reads the footer of every file
    already in the directory to conform types, a cost that grows with each flush, while log files
    all have their service's schema. The file is written the way ``append`` writes one (hidden
    temporary name, then an atomic rename), so readers see all of it or nothing.
    """
    if isinstance(source, FileSource):
        return _write_file(config, source, table)
    if isinstance(source, DorisSource):
        from ladle.monitor.feature_log_doris import ensure_table

        ensure_table(config, source, table.schema)
    return int(offline.append(source, table))
