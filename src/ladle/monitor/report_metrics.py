"""Prometheus metrics of the monitors, derived at scrape time from the newest stored reports.

Checks often run in short-lived processes (``ladle monitor ...``, a CronJob's ``ladle schedule
--once``), so their results are exported by whichever long-running process exposes ``/metrics``
(the feature server, ``ladle schedule --metrics-port``) from the report journal, not from gauges
set in the process that ran the check. Families (labels ``project`` plus those listed):

* ``ladle_feature_drift_score{view,feature,metric}``: the newest drift report's scores per feature
  (``metric``: ``psi``, ``ks``, ``chi2_p``, ``null_rate_delta``, ``out_of_range``);
* ``ladle_feature_drift_breach{view,feature}``: 1 when that report found the feature past a threshold;
* ``ladle_online_offline_skew_rate{view,feature}``: the newest skew audit's mismatch rate;
* ``ladle_feature_freshness_age_seconds{view}``: now minus the newest event of the newest
  freshness report (so it keeps growing between checks, as staleness does);
* ``ladle_feature_freshness_slo_breach{view}``: 1 when that age is past the view's SLO (or there
  is no event at all), else 0; views without an SLO are not exported.

Reports are read at most every ``cache_seconds`` (15 s) per process, newest per kind and subject in
one query (ids grow with time, so the newest row is the highest id); a registry that cannot be
read exports nothing for that scrape (and logs why) rather than failing the scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric

from ladle.config import RegistryConfig
from ladle.monitor.drift import scores
from ladle.registry.engine import Database
from ladle.registry.reports import REPORT_KINDS, MonitorReport, monitor_reports

log = logging.getLogger(__name__)

DRIFT_SCORE = "ladle_feature_drift_score"
DRIFT_BREACH = "ladle_feature_drift_breach"
SKEW_RATE = "ladle_online_offline_skew_rate"
FRESHNESS_AGE = "ladle_feature_freshness_age_seconds"
FRESHNESS_BREACH = "ladle_feature_freshness_slo_breach"
#: The newest report of each kind (drift, skew, freshness), by subject.
Latest = dict[str, dict[str, MonitorReport]]
#: Every family this module exports (docs/monitoring.md documents each).
METRIC_NAMES: tuple[str, ...] = (DRIFT_SCORE, DRIFT_BREACH, SKEW_RATE, FRESHNESS_AGE, FRESHNESS_BREACH)


class ReportMetrics:
    """A prometheus_client collector over the report journals of one or more projects."""

    def __init__(self, cache_seconds: float = 15.0) -> None:
        self.cache_seconds = cache_seconds
        self._sources: dict[tuple[str, str, str], tuple[str, Database]] = {}
        self._lock = threading.Lock()
        self._cached: tuple[float, list[tuple[str, Latest]]] | None = None

    def watch(self, config: RegistryConfig, project: str, repo_path: Path) -> None:
        """Export the reports of ``project`` (idempotent)."""
        key = (config.path, project, str(repo_path))
        with self._lock:
            if key not in self._sources:
                self._sources[key] = (project, Database(config, repo_path))
                self._cached = None

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the stored reports (and must not be read at registration)."""
        return []

    def _latest(self) -> list[tuple[str, Latest]]:
        out = []
        with self._lock:
            sources = list(self._sources.values())
        for project, db in sources:
            try:
                out.append((project, newest_reports(db, project)))
            except Exception as exc:  # a scrape must answer even when one registry is unreachable or gone
                log.warning("monitor metrics: cannot read the reports of %s: %s", project, exc)
        return out

    def collect(self) -> Iterator[Metric]:
        """The five families, from the newest report of each kind and subject."""
        families = {
            DRIFT_SCORE: GaugeMetricFamily(
                DRIFT_SCORE, "Drift score of a feature against its baseline, newest drift report.",
                labels=["project", "view", "feature", "metric"],
            ),
            DRIFT_BREACH: GaugeMetricFamily(
                DRIFT_BREACH, "1 when the newest drift report found the feature past a threshold.",
                labels=["project", "view", "feature"],
            ),
            SKEW_RATE: GaugeMetricFamily(
                SKEW_RATE, "Share of sampled entities whose online value differed from point-in-time offline.",
                labels=["project", "view", "feature"],
            ),
            FRESHNESS_AGE: GaugeMetricFamily(
                FRESHNESS_AGE, "Seconds since the newest event of the view (as of its newest freshness report).",
                labels=["project", "view"],
            ),
            FRESHNESS_BREACH: GaugeMetricFamily(
                FRESHNESS_BREACH, "1 when the view's newest event is older than its freshness SLO.",
                labels=["project", "view"],
            ),
        }  # fmt: skip
        now = datetime.now(UTC)
        for project, latest in self._reports():
            _drift(families, project, latest.get("drift", {}))
            _skew(families, project, latest.get("skew", {}))
            _freshness(families, project, latest.get("freshness", {}), now)
        yield from families.values()

    def _reports(self) -> list[tuple[str, Latest]]:
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        fresh = self._latest()
        self._cached = (now, fresh)
        return fresh

    def close(self) -> None:
        """Close the journals' connections."""
        with self._lock:
            for _, db in self._sources.values():
                db.close()
            self._sources.clear()


def newest_reports(db: Database, project: str) -> Latest:
    """The newest report of each kind and subject, in one query (the history can be long)."""
    t = monitor_reports
    out: Latest = {kind: {} for kind in REPORT_KINDS}
    with db.read() as conn:
        if not sa.inspect(conn).has_table(t.name):
            return out  # no check has run against this registry yet
        newest = (
            sa.select(sa.func.max(t.c.report_id).label("report_id"))
            .where(t.c.project_id == project)
            .group_by(t.c.kind, t.c.subject)
            .subquery()
        )
        rows = conn.execute(sa.select(t).join(newest, t.c.report_id == newest.c.report_id)).mappings().all()
    for r in rows:
        out.setdefault(r["kind"], {})[r["subject"]] = MonitorReport(
            report_id=r["report_id"], kind=r["kind"], subject=r["subject"], status=r["status"],
            created_at=r["created_at"], window_start=r["window_start"], window_end=r["window_end"],
            payload=dict(r["payload"]),
        )  # fmt: skip
    return out


def _drift(families: dict[str, GaugeMetricFamily], project: str, reports: dict[str, MonitorReport]) -> None:
    # A view can be in several reports (materialized: subject = view; served: subject = service): newest wins.
    newest: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for report in reports.values():
        for ref, entry in report.payload.get("features", {}).items():
            if ref not in newest or newest[ref][0] < report.created_at:
                newest[ref] = (report.created_at, entry)
    for ref, (_, entry) in sorted(newest.items()):
        view, _, feature = ref.partition(":")
        for metric, value in scores(entry).items():
            families[DRIFT_SCORE].add_metric([project, view, feature, metric], value)
        families[DRIFT_BREACH].add_metric([project, view, feature], 1.0 if entry.get("breach") else 0.0)


def _skew(families: dict[str, GaugeMetricFamily], project: str, reports: dict[str, MonitorReport]) -> None:
    newest: dict[str, tuple[datetime, float]] = {}
    for report in reports.values():
        for ref, entry in report.payload.get("features", {}).items():
            if entry.get("compared") and (ref not in newest or newest[ref][0] < report.created_at):
                newest[ref] = (report.created_at, float(entry["rate"]))
    for ref, (_, rate) in sorted(newest.items()):
        view, _, feature = ref.partition(":")
        families[SKEW_RATE].add_metric([project, view, feature], rate)


def _freshness(
    families: dict[str, GaugeMetricFamily], project: str, reports: dict[str, MonitorReport], now: datetime
) -> None:
    for report in reports.values():
        for view, entry in report.payload.get("views", {}).items():
            newest = entry.get("newest_event")
            age = (now - datetime.fromisoformat(newest)).total_seconds() if newest else None
            if age is not None:
                families[FRESHNESS_AGE].add_metric([project, view], max(0.0, age))
            slo = entry.get("slo_seconds")
            if slo is not None:
                breach = age is None or age > float(slo)
                families[FRESHNESS_BREACH].add_metric([project, view], 1.0 if breach else 0.0)


#: The process-wide collector the feature server and ``ladle schedule`` register (see ``watch_reports``).
COLLECTOR = ReportMetrics()


def watch_reports(registry: Any, config: RegistryConfig, project: str, repo_path: Path) -> None:
    """Export ``project``'s monitoring reports on the prometheus_client ``registry`` (idempotent)."""
    COLLECTOR.watch(config, project, repo_path)
    registered = getattr(registry, "_ladle_report_metrics", False)
    if not registered:
        registry.register(COLLECTOR)
        registry._ladle_report_metrics = True
