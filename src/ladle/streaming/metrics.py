"""Prometheus metrics of ``ladle stream``, and its HTTP endpoints (``/metrics``, ``/health``, ``/ready``).

Every series is in one registry per process (:class:`StreamMetrics`), so two stream runners in one
Python process (tests) do not mix. The event-to-online latency is observed once per message; it is
kept as bucket counts in numpy and exported as a histogram at scrape time, so 10,000 events a
second cost one ``searchsorted`` per micro-batch, not 10,000 locked ``observe`` calls.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

#: Event-to-online latency buckets (seconds): fine from 1 ms to 1 s, then coarse.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class LatencyHistogram(Collector):
    """A histogram kept as numpy bucket counts; by default ``ladle_stream_event_to_online_seconds``
    (Kafka message timestamp → after the online write)."""

    def __init__(
        self,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
        name: str = "ladle_stream_event_to_online_seconds",
        documentation: str = "Time from the Kafka message timestamp until its rows are written online.",
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = list(buckets)
        self._edges = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, seconds: np.ndarray) -> None:
        """Add many observations at once."""
        if seconds.size == 0:
            return
        slots = np.searchsorted(self._edges, seconds, side="left")
        counts = np.bincount(slots, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(seconds.sum())

    def observe(self, seconds: float) -> None:
        """Add one observation (no numpy call: once per micro-batch)."""
        slot = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            self._counts[slot] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[list[float], list[int], float]:
        """Bucket upper bounds, cumulative counts (with +Inf last) and the sum."""
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        return [*self._edges.tolist(), float("inf")], [int(c) for c in cumulative], total

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (None without observations)."""
        bounds, cumulative, _ = self.snapshot()
        if not cumulative[-1]:
            return None
        rank = q * cumulative[-1]
        return next(b for b, c in zip(bounds, cumulative, strict=True) if c >= rank)

    def collect(self) -> Iterable[Metric]:
        bounds, cumulative, total = self.snapshot()
        family = HistogramMetricFamily(self.name, self.documentation)
        buckets = [("+Inf" if b == float("inf") else repr(b), c) for b, c in zip(bounds, cumulative, strict=True)]
        family.add_metric([], buckets, total)
        yield family


class StreamMetrics:
    """Every metric of one stream process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lag = Gauge(
            "ladle_stream_consumer_lag",
            "Messages in the partition not yet processed (high watermark - position).",
            ["topic", "partition"],
            registry=r,
        )
        self.events_in = Counter("ladle_stream_events", "Messages read from Kafka, per source.", ["source"], registry=r)
        self.accepted = Counter(
            "ladle_stream_events_accepted", "Events accepted (rules 1-2), per source.", ["source"], registry=r
        )
        self.emitted = Counter(
            "ladle_stream_rows_emitted",
            "Rows the engine emitted, per feature view (each micro-batch writes each key's newest of them online).",
            ["feature_view"],
            registry=r,
        )
        self.dead_letters = Counter(
            "ladle_stream_dead_letters",
            "Messages sent to the dead-letter topic, per source and reason (late, undecodable, schema).",
            ["source", "reason"],
            registry=r,
        )
        self.retained = Gauge(
            "ladle_stream_engine_retained_events",
            "Events the incremental engine keeps in memory, per source and partition.",
            ["source", "partition"],
            registry=r,
        )
        self.freshness = Gauge(
            "ladle_stream_feature_freshness_seconds",
            "Now minus the newest event time written online, per feature view.",
            ["feature_view"],
            registry=r,
        )
        self.commit_seconds = Histogram(
            "ladle_stream_commit_seconds",
            "Time to flush files and dead letters and commit offsets.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.offline_rows = Counter(
            "ladle_stream_offline_rows", "Accepted events appended to the batch source, per source.", ["source"],
            registry=r,
        )  # fmt: skip
        self.latency = LatencyHistogram()
        r.register(self.latency)
        self.batch = LatencyHistogram(
            name="ladle_stream_batch_seconds",
            documentation="Time the loop spends on one micro-batch: decode, engine, online write.",
        )
        r.register(self.batch)
        self._newest: dict[str, float] = {}

    def set_newest(self, view: str, newest_seconds: float) -> None:
        """Remember the newest event time written online for ``view`` (seconds since the epoch)."""
        if view not in self._newest:
            self.freshness.labels(feature_view=view).set_function(lambda: time.time() - self._newest[view])
        self._newest[view] = max(self._newest.get(view, newest_seconds), newest_seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)


ReadyCheck = Callable[[], Mapping[str, str | None]]


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        elif path in ("/health", "/healthz"):
            self._send(200, b'{"status":"ok"}', "application/json")
        elif path in ("/ready", "/readyz"):
            checks = dict(self.server.ready())
            ok = all(v is None for v in checks.values())
            body = {"ready": ok, "checks": {k: v or "ok" for k, v in checks.items()}}
            self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b'{"error":"not found"}', "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
        return


class MetricsServer(HTTPServer):
    """``/metrics``, ``/health`` and ``/ready`` on one port, served by a daemon thread.

    ``ready`` returns each check's problem (None when it passes); ``/ready`` answers 503 when any fails.
    Requests are served one at a time, so the checks never run concurrently with each other.
    """

    def __init__(self, host: str, port: int, metrics: StreamMetrics, ready: ReadyCheck) -> None:
        super().__init__((host, port), _Handler)
        self.metrics = metrics
        self.ready = ready
        self._thread = threading.Thread(target=self.serve_forever, name="ladle-stream-metrics", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.server_address[1])

    def start(self) -> MetricsServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
