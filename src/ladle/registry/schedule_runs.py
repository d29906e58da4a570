"""Scheduled-run bookkeeping in the registry database: each schedule's progress and run history.

Two tables in the registry database, created on first use beside the registry's own tables:

* ``schedule_state``: one row per (project, schedule): ``cursor_at`` (every fire at or before it
  has been handled), ``failures`` (consecutive failed attempts at the next fire), ``retry_at``.
* ``schedule_runs``: one row per fire attempt (and per range of fires skipped by the catch-up
  policy): trigger, scheduled time, event-time window, views, status, owner, timings, error.
  Rows written per view are in ``materialization_runs``, recorded by the materializer.

Only the holder of a schedule's lease writes its rows; the cursor only ever moves forward, so a
scheduler that lost its lease mid-run cannot move it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ladle.registry.extension import ExtensionTables
from ladle.registry.schema import UtcDateTime

Trigger = Literal["scheduled", "catch_up", "retry", "manual"]
RunStatus = Literal["running", "succeeded", "failed", "skipped"]

metadata = sa.MetaData()

schedule_state = sa.Table(
    "schedule_state",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("schedule_name", sa.String(255), primary_key=True),
    sa.Column("cursor_at", UtcDateTime, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("retry_at", UtcDateTime, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

schedule_runs = sa.Table(
    "schedule_runs",
    metadata,
    sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("schedule_name", sa.String(255), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("scheduled_for", UtcDateTime, nullable=False),
    sa.Column("window_start", UtcDateTime, nullable=False),
    sa.Column("window_end", UtcDateTime, nullable=False),
    sa.Column("feature_views", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("duration_seconds", sa.Float, nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_schedule_runs_schedule", "project_id", "schedule_name", "scheduled_for"),
)

# Different from the registry's own schema lock so the two creations never wait on each other.
_PG_SCHEMA_LOCK = 0x1AD1F  # distinct per extension (ladle.registry.extension)


@dataclass(frozen=True)
class ScheduleState:
    """A schedule's persisted progress.

    ``cursor``: every fire at or before it has been handled (succeeded, or skipped on purpose).
    A new schedule's cursor is the moment a scheduler first saw it, so its first fire is the next
    one after that, and downtime after that moment is caught up.
    ``failures``: consecutive failed attempts at the first pending fire; ``retry_at``: not before.
    """

    cursor: datetime
    failures: int = 0
    retry_at: datetime | None = None


@dataclass(frozen=True)
class ScheduleRun:
    """One recorded fire attempt (or one range of skipped fires)."""

    run_id: int
    schedule: str
    trigger: str
    scheduled_for: datetime
    window_start: datetime
    window_end: datetime
    feature_views: tuple[str, ...]
    status: str
    owner: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 times)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        out["feature_views"] = list(self.feature_views)
        return out


class ScheduleJournal(ExtensionTables):
    """Reads and writes one project's schedule state and run history."""

    metadata = metadata
    schema_lock = _PG_SCHEMA_LOCK

    def _key(self, name: str) -> sa.ColumnElement[bool]:
        return sa.and_(schedule_state.c.project_id == self.project, schedule_state.c.schedule_name == name)

    # -- state ------------------------------------------------------------------------------------
    def states(self) -> dict[str, ScheduleState]:
        """Every schedule's state in this project, by name."""
        self._schema()
        query = sa.select(schedule_state).where(schedule_state.c.project_id == self.project)
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return {r["schedule_name"]: ScheduleState(r["cursor_at"], r["failures"], r["retry_at"]) for r in rows}

    def state(self, name: str) -> ScheduleState | None:
        """The schedule's state, or None if no scheduler has seen it yet."""
        self._schema()
        with self._db.read() as conn:
            return _read_state(conn, self._key(name))

    def ensure(self, name: str, anchor: datetime) -> ScheduleState:
        """The schedule's state, created with ``cursor=anchor`` if this is its first sighting."""
        existing = self.state(name)
        if existing is not None:
            return existing
        row = {
            "project_id": self.project,
            "schedule_name": name,
            "cursor_at": anchor,
            "failures": 0,
            "retry_at": None,
            "updated_at": anchor,
        }
        try:
            with self._db.write() as conn:
                conn.execute(schedule_state.insert(), row)
        except IntegrityError:
            pass  # another scheduler saw it first; its anchor stands
        state = self.state(name)
        assert state is not None
        return state

    def advance(self, name: str, fire: datetime, at: datetime) -> None:
        """Mark every fire up to ``fire`` handled and clear failures; never moves the cursor back."""
        with self._db.write() as conn:
            conn.execute(
                schedule_state.update()
                .where(self._key(name), schedule_state.c.cursor_at < fire)
                .values(cursor_at=fire, failures=0, retry_at=None, updated_at=at)
            )

    def fail(self, name: str, retry_at: datetime, at: datetime) -> None:
        """Count one more failed attempt at the pending fire; retry not before ``retry_at``."""
        with self._db.write() as conn:
            conn.execute(
                schedule_state.update()
                .where(self._key(name))
                .values(failures=schedule_state.c.failures + 1, retry_at=retry_at, updated_at=at)
            )

    # -- runs -------------------------------------------------------------------------------------
    def start(
        self,
        name: str,
        trigger: Trigger,
        fire: datetime,
        window: tuple[datetime, datetime],
        views: Sequence[str],
        owner: str,
        at: datetime,
    ) -> int:
        """Record a run as ``running``; returns its id."""
        self._schema()
        values = {
            "project_id": self.project,
            "schedule_name": name,
            "trigger": trigger,
            "scheduled_for": fire,
            "window_start": window[0],
            "window_end": window[1],
            "feature_views": list(views),
            "status": "running",
            "owner": owner,
            "started_at": at,
            "finished_at": None,
            "duration_seconds": None,
            "detail": "",
        }
        with self._db.write() as conn:
            key = conn.execute(schedule_runs.insert(), values).inserted_primary_key
        assert key is not None
        return int(key[0])

    def finish(self, run_id: int, status: RunStatus, at: datetime, duration: float, detail: str = "") -> None:
        """Record a run's outcome."""
        with self._db.write() as conn:
            conn.execute(
                schedule_runs.update()
                .where(schedule_runs.c.run_id == run_id)
                .values(status=status, finished_at=at, duration_seconds=duration, detail=detail)
            )

    def skip(
        self,
        name: str,
        first: datetime,
        last: datetime,
        window: tuple[datetime, datetime],
        views: Sequence[str],
        owner: str,
        at: datetime,
        detail: str,
    ) -> None:
        """Record that fires ``first``..``last`` will not run (catch-up policy) and move past them."""
        run_id = self.start(name, "catch_up", last, window, views, owner, at)
        self.finish(run_id, "skipped", at, 0.0, detail)
        self.advance(name, last, at)

    def runs(self, name: str | None = None, limit: int = 50) -> list[ScheduleRun]:
        """Recorded runs, newest first (by scheduled time, then id)."""
        self._schema()
        query = sa.select(schedule_runs).where(schedule_runs.c.project_id == self.project)
        if name is not None:
            query = query.where(schedule_runs.c.schedule_name == name)
        query = query.order_by(schedule_runs.c.scheduled_for.desc(), schedule_runs.c.run_id.desc()).limit(limit)
        with self._db.read() as conn:
            return [_run(row) for row in conn.execute(query).mappings()]

    def last_runs(self) -> dict[str, ScheduleRun]:
        """Each schedule's most recently started run."""
        self._schema()
        newest = (
            sa.select(sa.func.max(schedule_runs.c.run_id))
            .where(schedule_runs.c.project_id == self.project)
            .group_by(schedule_runs.c.schedule_name)
        )
        query = sa.select(schedule_runs).where(schedule_runs.c.run_id.in_(newest))
        with self._db.read() as conn:
            return {row["schedule_name"]: _run(row) for row in conn.execute(query).mappings()}


def _read_state(conn: Connection, key: sa.ColumnElement[bool]) -> ScheduleState | None:
    row = conn.execute(sa.select(schedule_state).where(key)).mappings().first()
    return None if row is None else ScheduleState(row["cursor_at"], row["failures"], row["retry_at"])


def _run(row: Any) -> ScheduleRun:
    return ScheduleRun(
        run_id=int(row["run_id"]),
        schedule=row["schedule_name"],
        trigger=row["trigger"],
        scheduled_for=row["scheduled_for"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        feature_views=tuple(row["feature_views"]),
        status=row["status"],
        owner=row["owner"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_seconds=row["duration_seconds"],
        detail=row["detail"],
    )
