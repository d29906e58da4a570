"""Monitoring reports in the registry database: drift, skew and freshness results, kept as history.

One table, created on first use beside the registry's own tables (like ``schedule_runs``):

* ``monitor_reports``: one row per report: ``kind`` (``drift``, ``skew``, ``freshness``),
  ``subject`` (the feature view or feature service it is about), ``status`` (``ok``, ``breach``
  or ``error``), when it was made, the window it covers, and the report itself as JSON
  (``payload``: per-feature scores, thresholds and, for drift, the binned distributions of baseline
  and current that the UI plots).

The monitors (``ladle.monitor``) write it; ``ladle monitor ... --history``, the metrics and the web
UI read it. Rows are never updated, so readers need no locking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from ladle.errors import RegistryError
from ladle.registry.extension import ExtensionTables
from ladle.registry.schema import UtcDateTime

ReportKind = Literal["drift", "skew", "freshness"]
ReportStatus = Literal["ok", "breach", "error"]
REPORT_KINDS: tuple[str, ...] = ("drift", "skew", "freshness")
REPORT_STATUSES: tuple[str, ...] = ("ok", "breach", "error")

metadata = sa.MetaData()

monitor_reports = sa.Table(
    "monitor_reports",
    metadata,
    sa.Column("report_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("window_start", UtcDateTime, nullable=True),
    sa.Column("window_end", UtcDateTime, nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_monitor_reports_subject", "project_id", "kind", "subject", "created_at"),
)

# Different from the registry's and the scheduler's schema locks.
_PG_SCHEMA_LOCK = 0x1AD20  # distinct per extension (ladle.registry.extension)


@dataclass(frozen=True)
class MonitorReport:
    """One stored report."""

    report_id: int
    kind: str
    subject: str
    status: str
    created_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 times)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


class ReportJournal(ExtensionTables):
    """Reads and writes one project's monitoring reports."""

    metadata = metadata
    schema_lock = _PG_SCHEMA_LOCK

    def record(
        self,
        kind: str,
        subject: str,
        status: str,
        payload: dict[str, Any],
        *,
        window_start: datetime | None = None,
        window_end: datetime | None = None,
        created_at: datetime | None = None,
    ) -> int:
        """Store one report and return its id."""
        if kind not in REPORT_KINDS:
            raise RegistryError(f"report kind must be one of {', '.join(REPORT_KINDS)}, got {kind!r}")
        if status not in REPORT_STATUSES:
            raise RegistryError(f"report status must be one of {', '.join(REPORT_STATUSES)}, got {status!r}")
        self._schema()
        row = {
            "project_id": self.project,
            "kind": kind,
            "subject": subject,
            "status": status,
            "created_at": created_at or datetime.now(UTC),
            "window_start": window_start,
            "window_end": window_end,
            "payload": payload,
        }
        with self._db.write() as conn:
            key = conn.execute(monitor_reports.insert().values(**row)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def reports(
        self, kind: str | None = None, subject: str | None = None, *, limit: int = 50, offset: int = 0
    ) -> list[MonitorReport]:
        """Reports of the project, newest first, optionally of one kind and subject."""
        self._schema()
        t = monitor_reports
        query = sa.select(t).where(t.c.project_id == self.project)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        if subject is not None:
            query = query.where(t.c.subject == subject)
        query = query.order_by(t.c.created_at.desc(), t.c.report_id.desc()).limit(limit).offset(offset)
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            MonitorReport(
                report_id=r["report_id"],
                kind=r["kind"],
                subject=r["subject"],
                status=r["status"],
                created_at=r["created_at"],
                window_start=r["window_start"],
                window_end=r["window_end"],
                payload=dict(r["payload"]),
            )
            for r in rows
        ]

    def latest(self, kind: str) -> dict[str, MonitorReport]:
        """The newest report of ``kind`` for each subject."""
        newest: dict[str, MonitorReport] = {}
        for report in self.reports(kind, limit=10_000):
            newest.setdefault(report.subject, report)
        return newest
