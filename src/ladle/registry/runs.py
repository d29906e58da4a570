"""Materialization runs and scheduler leases, stored next to the definitions.

Leases are atomic on both databases without database-specific SQL: taking one is a conditional
``UPDATE`` (free, expired, or already ours) and, when no row exists yet, an ``INSERT`` that loses
to a concurrent insert on the primary key. Lease times come from the caller's clock, so hosts
sharing a registry should keep their clocks in sync (NTP); see docs/registry.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ladle.errors import RegistryError
from ladle.registry.base import MaterializationRun
from ladle.registry.engine import Database
from ladle.registry.schema import leases, materialization_runs

RUN_STATUSES = ("succeeded", "failed")


def begin_run(db: Database, project: str, view: str, start: datetime, end: datetime) -> int:
    """Insert a ``running`` run and return its id."""
    with db.write() as conn:
        result = conn.execute(
            materialization_runs.insert().values(
                project_id=project,
                feature_view_name=view,
                start_time=start,
                end_time=end,
                status="running",
                started_at=datetime.now(UTC),
                finished_at=None,
                rows_written=0,
                detail="",
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def finish_run(db: Database, project: str, run_id: int, status: str, rows: int, detail: str) -> None:
    """Record how a run ended."""
    if status not in RUN_STATUSES:
        raise RegistryError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    t = materialization_runs
    with db.write() as conn:
        result = conn.execute(
            t.update()
            .where(t.c.run_id == run_id, t.c.project_id == project)
            .values(status=status, finished_at=datetime.now(UTC), rows_written=int(rows), detail=detail)
        )
        if result.rowcount != 1:
            raise RegistryError(f"no materialization run {run_id} in project '{project}'")


def list_runs(db: Database, project: str, view: str | None, limit: int) -> list[MaterializationRun]:
    """Runs of the project (or one view), newest first."""
    t = materialization_runs
    query = sa.select(t).where(t.c.project_id == project)
    if view is not None:
        query = query.where(t.c.feature_view_name == view)
    query = query.order_by(t.c.started_at.desc(), t.c.run_id.desc()).limit(limit)
    rows = db.read_retrying(lambda conn: conn.execute(query).all())
    return [
        MaterializationRun(
            view=r.feature_view_name,
            start=r.start_time,
            end=r.end_time,
            status=r.status,
            started_at=r.started_at,
            finished_at=r.finished_at,
            rows_written=r.rows_written,
            detail=r.detail,
            run_id=r.run_id,
        )
        for r in rows
    ]


def acquire_lease(db: Database, project: str, name: str, owner: str, ttl_seconds: float) -> bool:
    """Take a lease that is free, expired or already held by ``owner``."""
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_seconds)
    t = leases
    with db.write() as conn:
        taken = conn.execute(
            t.update()
            .where(
                t.c.project_id == project,
                t.c.lease_name == name,
                sa.or_(t.c.owner == owner, t.c.expires_at <= now),
            )
            .values(owner=owner, acquired_at=now, expires_at=expires)
        )
        if taken.rowcount == 1:
            return True
    try:
        with db.write() as conn:
            conn.execute(
                t.insert().values(project_id=project, lease_name=name, owner=owner, acquired_at=now, expires_at=expires)
            )
    except IntegrityError:
        return False  # held by someone else (or they inserted it a moment before us)
    return True


def renew_lease(db: Database, project: str, name: str, owner: str, ttl_seconds: float) -> bool:
    """Extend a lease still held by ``owner`` (even if it expired, as long as nobody took it over)."""
    t = leases
    expires = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
    with db.write() as conn:
        result = conn.execute(
            t.update()
            .where(t.c.project_id == project, t.c.lease_name == name, t.c.owner == owner)
            .values(expires_at=expires)
        )
        return result.rowcount == 1


def release_lease(db: Database, project: str, name: str, owner: str) -> None:
    """Delete a lease if ``owner`` still holds it."""
    t = leases
    with db.write() as conn:
        conn.execute(t.delete().where(t.c.project_id == project, t.c.lease_name == name, t.c.owner == owner))
