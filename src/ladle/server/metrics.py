"""Prometheus metrics of the feature server, correct across worker processes.

``ladle serve`` runs every worker in prometheus_client's multiprocess mode with a per-run
``PROMETHEUS_MULTIPROC_DIR`` (set before this module is imported); ``GET /metrics`` on any
worker then reports the sum over all workers. Without that variable (in-process tests, an app
embedded elsewhere) metrics live in the default registry.

Updates on the request path are cheap: they are summed in plain per-process dicts (a bucket
index and two additions) and written to prometheus_client by :func:`flush`, which each worker
calls every half second and ``/metrics`` calls before rendering, so a scrape may miss at most the
last half second of another worker. (Each multiprocess-mode write is an mmap update behind a lock,
about 3 µs; a request makes nine.) The per-view newest-event gauge is written only when it moves
forward.

Materialization durations live in :mod:`ladle.metrics` and are recorded by the materializer
itself, so runs started through the server show up in its ``/metrics``.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from ladle.metrics import MATERIALIZATION_DURATION
from ladle.monitor.report_metrics import METRIC_NAMES as MONITOR_METRIC_NAMES
from ladle.types import FieldStatus

if TYPE_CHECKING:
    from ladle.retrieval.plan import ViewRead
    from ladle.store import FeatureStore

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_ENTITY_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

REQUEST_LATENCY = Histogram(
    "feast_online_request_latency",
    "Time to answer a request, in seconds.",
    ["endpoint", "protocol"],
    buckets=_LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "feast_feature_server_request",
    "Requests answered, by endpoint, protocol and status (HTTP status or gRPC code name).",
    ["endpoint", "protocol", "status"],
)
FEATURE_REQUESTS = Counter(
    "feast_feature_request_count",
    "Feature values requested from a feature view (entity rows x features).",
    ["feature_view"],
)
FEATURE_NOT_FOUND = Counter(
    "feast_feature_not_found_count",
    "Feature values answered NOT_FOUND, by feature view.",
    ["feature_view"],
)
ENTITY_COUNT = Histogram(
    "feast_online_features_entity_count",
    "Entity rows per online request.",
    buckets=_ENTITY_BUCKETS,
)
STORE_READ = Histogram(
    "feast_feature_server_online_store_read_duration_seconds",
    "Time spent in the online store read (resolution included), in seconds.",
    buckets=_LATENCY_BUCKETS,
)
PUSHES = Counter("feast_push_request", "Push requests, by push source and mode.", ["push_source", "mode"])
NEWEST_EVENT = Gauge(
    "ladle_feature_newest_event_timestamp_seconds",
    "Newest event time (Unix seconds) the server has read or written for a feature view.",
    ["project", "feature_view"],
    multiprocess_mode="max",
)
WORKERS = Gauge("ladle_server_workers", "Live server worker processes.", multiprocess_mode="livesum")

FRESHNESS_NAME = "feast_feature_freshness_seconds"

_latency_children: dict[tuple[str, str], Any] = {}
_request_children: dict[tuple[str, str, str], Any] = {}
_view_children: dict[str, tuple[Any, Any]] = {}
_newest: dict[tuple[str, str], float] = {}


class _Pending:
    """Observations not yet written to prometheus_client, summed per label child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # offloaded reads observe from executor threads
        self.counts: dict[Any, float] = {}
        self.histograms: dict[Any, tuple[list[float], list[float]]] = {}

    def inc(self, child: Any, amount: float) -> None:
        with self.lock:
            self.counts[child] = self.counts.get(child, 0.0) + amount

    def observe(self, child: Any, value: float) -> None:
        # The same bucket prometheus_client picks: the first upper bound >= value.
        index = bisect.bisect_left(child._upper_bounds, value)
        with self.lock:
            entry = self.histograms.get(child)
            if entry is None:
                entry = self.histograms[child] = ([0.0] * len(child._upper_bounds), [0.0])
            entry[0][index] += 1
            entry[1][0] += value

    def flush(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, {}
            histograms, self.histograms = self.histograms, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, (buckets, total) in histograms.items():
            child._sum.inc(total[0])
            for bucket, n in zip(child._buckets, buckets, strict=True):
                if n:
                    bucket.inc(n)


_pending = _Pending()


def flush() -> None:
    """Write the observations summed since the last flush to prometheus_client."""
    _pending.flush()


def observe_request(endpoint: str, protocol: str, status: str, seconds: float) -> None:
    """Count one answered request and its latency."""
    child = _latency_children.get((endpoint, protocol))
    if child is None:
        child = _latency_children[(endpoint, protocol)] = REQUEST_LATENCY.labels(endpoint, protocol)
    _pending.observe(child, seconds)
    key = (endpoint, protocol, status)
    counter = _request_children.get(key)
    if counter is None:
        counter = _request_children[key] = REQUESTS.labels(endpoint, protocol, status)
    _pending.inc(counter, 1)


def observe_online_read(entity_rows: int, read_seconds: float) -> None:
    """Record the size and store time of one online read."""
    _pending.observe(ENTITY_COUNT, entity_rows)
    _pending.observe(STORE_READ, read_seconds)


def observe_view_reads(
    project: str, views: Sequence[ViewRead], rows: int, not_found: Sequence[int], newest: Sequence[int]
) -> None:
    """Count the values requested from each view of a read and how many were NOT_FOUND (per row, so
    times the view's width), and note each view's newest event time (µs, 0 for none)."""
    children = [_view_children.get(view.name) or _view_child(view.name) for view in views]
    with _pending.lock:
        counts = _pending.counts
        for (requested_child, not_found_child), view, missing in zip(children, views, not_found, strict=True):
            width = view.stop - view.start
            counts[requested_child] = counts.get(requested_child, 0.0) + rows * width
            if missing:
                counts[not_found_child] = counts.get(not_found_child, 0.0) + missing * width
    for view, micros in zip(views, newest, strict=True):
        if micros:
            note_event_time(project, view.name, micros)


def _view_child(view: str) -> tuple[Any, Any]:
    children = _view_children[view] = (FEATURE_REQUESTS.labels(view), FEATURE_NOT_FOUND.labels(view))
    return children


def note_event_time(project: str, view: str, micros: int) -> None:
    """Remember the newest event time seen for a view (feeds feature freshness)."""
    seconds = micros / 1_000_000
    key = (project, view)
    if seconds > _newest.get(key, 0.0):
        _newest[key] = seconds
        NEWEST_EVENT.labels(project, view).set(seconds)


def observe_push(push_source: str, mode: str) -> None:
    """Count one push request."""
    PUSHES.labels(push_source, mode).inc()


def worker_started() -> None:
    """Mark this process as a live worker."""
    WORKERS.inc()


NOT_FOUND = int(FieldStatus.NOT_FOUND)


class _Freshness:
    """Derives ``feast_feature_freshness_seconds`` (now - newest event) at scrape time."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            FRESHNESS_NAME,
            "Seconds since the newest event the server has read or written for a feature view.",
            labels=["project", "feature_view"],
        )
        now = time.time()
        for metric in self._source.collect():
            if metric.name != NEWEST_EVENT._name:
                continue
            for sample in metric.samples:
                labels = sample.labels
                family.add_metric([labels["project"], labels["feature_view"]], max(0.0, now - sample.value))
        yield family


def multiprocess_dir() -> str | None:
    """The multiprocess directory in use, if any."""
    return os.environ.get(MULTIPROCESS_ENV) or None


@cache
def scrape_registry() -> Any:
    """The registry ``/metrics`` renders: every worker's files, or this process's metrics."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        collector = multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(_Freshness(collector))
        return registry
    REGISTRY.register(_Freshness(NEWEST_EVENT))
    return REGISTRY


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type (this process's pending values flushed)."""
    flush()
    return _generate_latest(scrape_registry()), CONTENT_TYPE_LATEST


def watch_reports(store: FeatureStore) -> None:
    """Also show ``store``'s newest monitoring reports (drift, skew, freshness) on ``/metrics``."""
    from ladle.monitor.report_metrics import watch_reports as watch

    watch(scrape_registry(), store.config.registry, store.project, store.repo_path)


#: Every metric family name ``/metrics`` can show (the docs test checks each is documented).
METRIC_NAMES: tuple[str, ...] = (
    *(m._name for m in (REQUEST_LATENCY, REQUESTS, FEATURE_REQUESTS, FEATURE_NOT_FOUND, ENTITY_COUNT, STORE_READ)),
    *(m._name for m in (MATERIALIZATION_DURATION, PUSHES, NEWEST_EVENT, WORKERS)),
    FRESHNESS_NAME,
    *MONITOR_METRIC_NAMES,
)
