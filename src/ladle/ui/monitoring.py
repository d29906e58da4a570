"""What the monitors know, for the Freshness and Drift pages: live freshness against each view's SLO, and
the saved drift baselines.

Freshness uses the monitor's own rules (:mod:`ladle.monitor.freshness`): the SLO is the view's
``ladle.freshness_slo`` tag, else ``monitoring.freshness_slo_seconds``; the age is *now* minus the
newest event of the newest freshness report about the view (as the ``ladle_feature_freshness_*``
metrics count it, so it keeps growing between checks). A view no check has measured yet is shown
with its SLO and, when it has been materialized, an age estimated from its materialization
watermark (the newest event it can hold online), marked as such.

Baselines are read from ``monitor_baselines`` without creating it (the UI never writes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ladle.definitions import FeatureView
from ladle.errors import DefinitionError
from ladle.monitor.baseline_store import monitor_baselines
from ladle.monitor.freshness import SLO_TAG, ViewFreshness, view_slo
from ladle.registry.engine import Database
from ladle.registry.reports import MonitorReport

Row = dict[str, Any]


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def freshness_rows(
    views: Iterable[FeatureView],
    watermarks: Mapping[str, datetime | None],
    latest: Mapping[str, MonitorReport],
    default_slo: float | None,
    now: datetime,
) -> list[Row]:
    """One row per view: SLO (tag or config), live age, status, and what the newest report said.

    ``status``: ``breach``/``ok`` against the SLO, ``no_slo`` when the view has none, ``unknown``
    when there is neither a report nor a watermark to age, ``error`` when the SLO tag is malformed.
    """
    measured: dict[str, tuple[MonitorReport, Mapping[str, Any]]] = {}
    for made in sorted(latest.values(), key=lambda r: (r.created_at, r.report_id)):
        for name, found in (made.payload.get("views") or {}).items():
            if isinstance(found, Mapping):
                measured[name] = (made, found)
    rows = []
    for view in views:
        error = None
        try:
            slo = view_slo(view, default_slo)
        except DefinitionError as exc:
            slo, error = None, str(exc)
        report, entry = measured.get(view.name, (None, {}))
        watermark = watermarks.get(view.name)
        judged_on = str(entry.get("judged_on") or ("online" if view.online else "offline"))
        if report is not None:
            newest, basis = _when(entry.get("newest_event")), "report"
        elif watermark is not None:
            newest, basis = watermark, "watermark"
        else:
            newest, basis = None, None
        live = ViewFreshness(view.name, now, slo, newest, newest, judged_on)
        if error is not None:
            status = "error"
        elif basis is None:
            status = "unknown"
        elif slo is None:
            status = "no_slo"
        else:
            status = "breach" if live.breach else "ok"
        rows.append(
            {
                "feature_view": view.name,
                "status": status,
                "slo_seconds": slo.total_seconds() if slo is not None else None,
                "slo_source": None if slo is None else "tag" if SLO_TAG in view.tags else "config",
                "age_seconds": live.age_seconds,
                "age_basis": basis,
                "newest_event": _iso(newest) if basis == "report" else None,
                "judged_on": judged_on if report is not None else None,
                "watermark": _iso(watermark),
                "checked_at": _iso(report.created_at) if report is not None else None,
                "reported_status": report.status if report is not None else None,
                "reported_age_seconds": entry.get("age_seconds"),
                "error": error,
            }
        )
    return rows


def baselines(db: Database, project: str, may_see: Callable[[str], bool]) -> list[Row]:
    """The baseline in force for each saved name (newest save), with how often it was saved, features per view."""
    t = monitor_baselines
    with db.read() as conn:
        if not sa.inspect(conn).has_table(t.name):
            return []  # no baseline was ever saved in this registry database
        saves = (
            sa.select(t.c.name, sa.func.max(t.c.baseline_id).label("newest"), sa.func.count().label("saves"))
            .where(t.c.project_id == project)
            .group_by(t.c.name)
            .subquery()
        )
        query = (
            sa.select(t.c.name, t.c.created_at, t.c.payload, saves.c.saves)
            .join(saves, t.c.baseline_id == saves.c.newest)
            .order_by(t.c.name)
        )
        found = conn.execute(query).mappings().all()
    out = []
    for r in found:
        payload = r["payload"] or {}
        features = payload.get("features") or {}
        views = sorted({ref.split(":", 1)[0] for ref in features})
        if not all(may_see(v) for v in views):
            continue
        out.append(
            {
                "name": r["name"],
                "created_at": _iso(r["created_at"]),
                "saves": int(r["saves"]),
                "rows": payload.get("rows"),
                "feature_service": (payload.get("source") or {}).get("feature_service"),
                "feature_views": views,
                "features": [
                    {
                        "ref": ref,
                        "type": p.get("type"),
                        "count": p.get("count"),
                        "nulls": p.get("nulls"),
                        "range": p.get("range"),
                        "categories": len(p.get("categories") or []),
                    }
                    for ref, p in sorted(features.items())
                ],
            }
        )
    return out
