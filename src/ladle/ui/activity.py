"""What happened to the features: job runs (materialization, schedules, stream sessions), freshness,
drift and skew reports, all read from the registry database (freshness: :mod:`ladle.ui.monitoring`).

Monitoring payload shapes are the ones agreed for :class:`~ladle.registry.reports.ReportJournal`
(docs/ui.md repeats them); the page plots whatever of them a report holds and shows the rest as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ladle.registry.base import MaterializationRun
from ladle.registry.reports import MonitorReport
from ladle.registry.schedule_runs import ScheduleRun
from ladle.registry.stream_sessions import StreamSession

Row = dict[str, Any]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _duration(started: datetime, finished: datetime | None) -> float | None:
    return (finished - started).total_seconds() if finished is not None else None


def materialization_rows(runs: Iterable[MaterializationRun]) -> list[Row]:
    """Materialization runs as timeline rows (one lane per view)."""
    return [
        {
            "job_type": "materialize",
            "id": r.run_id,
            "lane": r.view,
            "feature_views": [r.view],
            "status": r.status,
            "started_at": _iso(r.started_at),
            "finished_at": _iso(r.finished_at),
            "duration_seconds": _duration(r.started_at, r.finished_at),
            "rows": r.rows_written,
            "window": [_iso(r.start), _iso(r.end)],
            "detail": r.detail,
        }
        for r in runs
    ]


def schedule_rows(runs: Iterable[ScheduleRun]) -> list[Row]:
    """Schedule fires as timeline rows (one lane per schedule)."""
    return [
        {
            "job_type": "schedule",
            "id": r.run_id,
            "lane": r.schedule,
            "feature_views": list(r.feature_views),
            "status": r.status,
            "started_at": _iso(r.started_at),
            "finished_at": _iso(r.finished_at),
            "duration_seconds": r.duration_seconds,
            "rows": None,
            "window": [_iso(r.window_start), _iso(r.window_end)],
            "detail": r.detail or r.trigger,
        }
        for r in runs
    ]


def stream_rows(sessions: Iterable[StreamSession]) -> list[Row]:
    """Stream-process sessions as timeline rows (one lane per set of views)."""
    return [
        {
            "job_type": "stream",
            "id": s.session_id,
            "lane": "stream:" + ",".join(s.feature_views),
            "feature_views": list(s.feature_views),
            "status": s.status,
            "started_at": _iso(s.started_at),
            "finished_at": _iso(s.finished_at),
            "duration_seconds": _duration(s.started_at, s.finished_at),
            "rows": s.rows_emitted,
            "window": [None, None],
            "detail": s.detail or s.owner,
        }
        for s in sessions
    ]


def visible_runs(rows: Iterable[Row], may_see: Callable[[str], bool]) -> list[Row]:
    """Rows whose every feature view the caller may see, newest first."""
    kept = [r for r in rows if all(may_see(v) for v in r["feature_views"])]
    kept.sort(key=lambda r: r["started_at"] or "", reverse=True)
    return kept


def job_summary(rows: Sequence[Row]) -> list[Row]:
    """Per job lane: runs, failures, rows, mean duration and the last run's status."""
    lanes: dict[tuple[str, str], Row] = {}
    for r in rows:  # newest first, so the first row seen per lane is its last run
        lane = lanes.setdefault(
            (r["job_type"], r["lane"]),
            {"job_type": r["job_type"], "lane": r["lane"], "runs": 0, "failed": 0, "rows": 0, "durations": [],
             "last_status": r["status"], "last_started_at": r["started_at"]},
        )  # fmt: skip
        lane["runs"] += 1
        lane["failed"] += r["status"] == "failed"
        lane["rows"] += r["rows"] or 0
        if r["duration_seconds"] is not None:
            lane["durations"].append(r["duration_seconds"])
    out = []
    for lane in lanes.values():
        durations = lane.pop("durations")
        lane["mean_duration_seconds"] = sum(durations) / len(durations) if durations else None
        out.append(lane)
    return sorted(out, key=lambda x: (x["job_type"], x["lane"]))


def report_row(report: MonitorReport) -> Row:
    """A report without its payload (for lists)."""
    row = report.to_dict()
    payload = row.pop("payload")
    features = payload.get("features") or payload.get("views") or {}
    row["items"] = len(features) if isinstance(features, Mapping) else 0
    allowed = payload.get("max_rate") or 0.0  # skew entries have a rate, not a breach flag

    def breached(f: Any) -> bool:
        if not isinstance(f, Mapping):
            return False
        rate = f.get("rate")
        return bool(f.get("breach")) or (report.kind == "skew" and isinstance(rate, (int, float)) and rate > allowed)

    row["breaches"] = sum(1 for f in features.values() if breached(f)) if isinstance(features, Mapping) else 0
    return row


def drift_series(reports: Iterable[MonitorReport]) -> dict[str, list[Row]]:
    """Per feature, its drift scores over time (oldest first) from a subject's drift reports."""
    series: dict[str, list[Row]] = {}
    for report in sorted(reports, key=lambda r: (r.created_at, r.report_id)):
        for name, scores in (report.payload.get("features") or {}).items():
            if not isinstance(scores, Mapping):
                continue
            series.setdefault(name, []).append(
                {
                    "at": report.created_at.isoformat(),
                    "report_id": report.report_id,
                    "psi": scores.get("psi"),
                    "ks": scores.get("ks"),
                    "chi2_p": scores.get("chi2_p"),
                    "out_of_range": scores.get("out_of_range"),
                    "judged": scores.get("judged", True),
                    "breach": bool(scores.get("breach")),
                }
            )
    return series


def skew_series(reports: Iterable[MonitorReport]) -> dict[str, list[Row]]:
    """Per feature, its online/offline mismatch rate over time (oldest first)."""
    series: dict[str, list[Row]] = {}
    for report in sorted(reports, key=lambda r: (r.created_at, r.report_id)):
        for name, scores in (report.payload.get("features") or {}).items():
            if isinstance(scores, Mapping):
                rate, allowed = scores.get("rate"), report.payload.get("max_rate", 0.0)
                series.setdefault(name, []).append(
                    {
                        "at": report.created_at.isoformat(),
                        "report_id": report.report_id,
                        "rate": rate,
                        "breach": isinstance(rate, (int, float)) and rate > (allowed or 0.0),
                    }
                )
    return series
