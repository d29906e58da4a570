"""``SqlRegistry``: versioned definitions in SQL (a SQLite file by default, or PostgreSQL).

>>> registry = SqlRegistry(RegistryConfig(path="data/registry.db"), "carbon", Path("feature_repo"))
>>> registry.snapshot().feature_views.keys()

Writes go through :meth:`SqlRegistry.apply_changes`: one transaction guarded by the project's
version counter (optimistic concurrency), so that of two applies made from the same base exactly
one succeeds and the other gets a :class:`~ladle.errors.ConflictError`. See docs/registry.md.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ladle.config import RegistryConfig
from ladle.definitions import (
    DataSource,
    Entity,
    FeatureService,
    OnDemandFeatureView,
    Permission,
    source_from_spec,
    view_from_spec,
)
from ladle.errors import ConflictError, DefinitionError, RegistryError
from ladle.registry import runs
from ladle.registry.base import (
    KINDS,
    Kind,
    MaterializationRun,
    ObjectChange,
    ObjectVersion,
    RegistrySnapshot,
    canonical_spec,
    content_hash,
    default_applied_by,
)
from ladle.registry.cache import SnapshotCache
from ladle.registry.engine import Database
from ladle.registry.schema import (
    EXTENSION_TABLES,
    OBJECT_TABLES,
    PROJECT_TABLES,
    create_schema,
    materialization_intervals,
    object_versions,
    projects,
)
from ladle.registry.versions import DefinitionVersions
from ladle.times import as_utc


def _now() -> datetime:
    return datetime.now(UTC)


class SqlRegistry:
    """The registry of one project in a SQL database; implements :class:`ladle.registry.base.Registry`."""

    def __init__(self, config: RegistryConfig, project: str, repo_path: Path) -> None:
        self.config = config
        self.project = project
        self._db = Database(config, Path(repo_path))
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._versions = DefinitionVersions(self.history, project)  # type: ignore[arg-type]
        self._cache = SnapshotCache(config.cache_ttl_seconds, config.cache_mode, self._probe_version, self._load)
        # A forked child must not share pooled connections with its parent, and needs its own refresher.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    @property
    def where(self) -> str:
        """The database this registry uses, without credentials."""
        return self._db.where

    # -- reading ----------------------------------------------------------------------------
    def snapshot(self, *, allow_cache: bool = True) -> RegistrySnapshot:
        """The project's current definitions; ``allow_cache=False`` forces a reload."""
        return self._cache.get(allow_cache)

    def version(self) -> int:
        """The project's version counter in the database (0 if never applied)."""
        return self._probe_version()

    def history(self, kind: Kind, name: str) -> list[ObjectVersion]:
        """Every stored version of an object, oldest first (deletions have ``spec=None``)."""
        self._ensure_schema()
        t = object_versions
        query = (
            sa.select(t)
            .where(t.c.project_id == self.project, t.c.object_kind == kind, t.c.object_name == name)
            .order_by(t.c.version)
        )
        rows = self._db.read_retrying(lambda conn: conn.execute(query).all())
        return [
            ObjectVersion(
                kind=kind,
                name=name,
                version=r.version,
                content_hash=r.content_hash,
                applied_at=r.applied_at,
                applied_by=r.applied_by,
                spec=r.spec,
            )
            for r in rows
        ]

    def records(self, kind: Kind) -> dict[str, Any]:
        """``{name: spec}`` of every stored object of a kind outside snapshots (``RECORD_KINDS``)."""
        self._ensure_schema()
        table, column = OBJECT_TABLES[kind]
        query = sa.select(table.c[column], table.c.spec).where(table.c.project_id == self.project)
        rows = self._db.read_retrying(lambda conn: conn.execute(query).all())
        return {row[0]: row[1] for row in sorted(rows, key=lambda r: r[0])}

    def list_projects(self) -> list[str]:
        """Every project that has been applied to this database."""
        self._ensure_schema()
        query = sa.select(projects.c.project_id).order_by(projects.c.project_id)
        return list(self._db.read_retrying(lambda conn: conn.execute(query).scalars().all()))

    def dump(self) -> dict[str, Any]:
        """Everything stored for the project as JSON-ready data (``ladle registry-dump``)."""
        self._ensure_schema()

        def read(conn: Connection) -> dict[str, Any]:
            out: dict[str, Any] = {"project": self.project, "version": _project_version(conn, self.project)}
            for kind in KINDS:
                table, column = OBJECT_TABLES[kind]
                query = sa.select(table).where(table.c.project_id == self.project).order_by(table.c[column])
                out[table.name] = [
                    {
                        "name": row[column],
                        "version": row["version"],
                        "content_hash": row["content_hash"],
                        "created_timestamp": row["created_timestamp"].isoformat(),
                        "last_updated_timestamp": row["last_updated_timestamp"].isoformat(),
                        "spec": row["spec"],
                    }
                    for row in conn.execute(query).mappings()
                ]
            return out

        data = self._db.read_retrying(read)
        data["watermarks"] = {view: end.isoformat() for view, end in sorted(self.watermarks().items())}
        return data

    # -- writing ----------------------------------------------------------------------------
    def apply_changes(
        self,
        changes: Sequence[ObjectChange],
        *,
        expected_version: int | None,
        applied_by: str | None = None,
    ) -> RegistrySnapshot:
        """Write ``changes`` in one transaction if the project is still at ``expected_version``.

        An object whose spec is unchanged writes nothing. Raises :class:`ConflictError` (and
        writes nothing) when another writer moved the project version first. ``expected_version=None``
        builds on whatever version the transaction reads (a racing writer still causes a conflict).
        Returns the snapshot after the write, which also refreshes this cache.
        """
        self._ensure_schema()
        if not changes:
            return self.snapshot(allow_cache=False)
        who = applied_by or default_applied_by()
        now = _now()
        try:
            with self._db.write() as conn:
                effective = [c for c in changes if _changes_something(conn, self.project, c)]
                if effective:
                    new_version = self._bump_version(conn, expected_version, who, now)
                    for change in effective:
                        _write_change(conn, self.project, change, new_version, who, now)
                snapshot = self._read_snapshot(conn)
        except IntegrityError as exc:
            # Only a racing first apply of the same project can collide on a primary key.
            raise ConflictError(
                f"registry project '{self.project}' changed since this apply read it (another apply created it "
                "at the same time); nothing was applied. Run plan/apply again."
            ) from exc
        self._cache.put(snapshot)
        return snapshot

    def delete_project(self) -> None:
        """Delete every row of this project from every registry table."""
        self._ensure_schema()
        with self._db.write() as conn:
            for table in PROJECT_TABLES:
                conn.execute(table.delete().where(table.c.project_id == self.project))
            inspector = sa.inspect(conn)
            for name in EXTENSION_TABLES:
                if inspector.has_table(name):
                    extra = sa.table(name, sa.column("project_id"))
                    conn.execute(extra.delete().where(extra.c.project_id == self.project))
        self._cache.put(RegistrySnapshot(project=self.project, version=0, versions=self._versions))

    # -- materialization --------------------------------------------------------------------
    def record_materialization(self, view: str, start: datetime, end: datetime, rows: int) -> None:
        """Record a successful interval; the watermark becomes ``max(end)`` over all intervals."""
        self._ensure_schema()
        start, end = as_utc(start), as_utc(end)
        if end < start:
            raise RegistryError(f"materialization interval of '{view}' ends ({end}) before it starts ({start})")
        with self._db.write() as conn:
            conn.execute(
                materialization_intervals.insert().values(
                    project_id=self.project,
                    feature_view_name=view,
                    start_time=start,
                    end_time=end,
                    rows_written=int(rows),
                    recorded_at=_now(),
                )
            )

    def watermark(self, view: str) -> datetime | None:
        """End of the newest recorded materialization of ``view`` (UTC), or None."""
        return self.watermarks().get(view)

    def watermarks(self) -> dict[str, datetime]:
        """The watermark of every materialized view of the project."""
        self._ensure_schema()
        t = materialization_intervals
        query = (
            sa.select(t.c.feature_view_name, sa.func.max(t.c.end_time).label("end_time"))
            .where(t.c.project_id == self.project)
            .group_by(t.c.feature_view_name)
        )
        rows = self._db.read_retrying(lambda conn: conn.execute(query).all())
        # max() loses the column type on some dialects; normalise to aware UTC here.
        return {r.feature_view_name: _as_datetime(r.end_time) for r in rows}

    def begin_run(self, view: str, start: datetime, end: datetime) -> int:
        """Record a materialization run as ``running``; returns its id for :meth:`finish_run`."""
        self._ensure_schema()
        return runs.begin_run(self._db, self.project, view, as_utc(start), as_utc(end))

    def finish_run(self, run_id: int, status: str, rows: int = 0, detail: str = "") -> None:
        """Mark a run ``succeeded`` or ``failed`` with its row count and a detail message."""
        self._ensure_schema()
        runs.finish_run(self._db, self.project, run_id, status, rows, detail)

    def runs(self, view: str | None = None, limit: int = 50) -> list[MaterializationRun]:
        """Recorded runs, newest first, optionally of one view."""
        self._ensure_schema()
        return runs.list_runs(self._db, self.project, view, limit)

    # -- leases -----------------------------------------------------------------------------
    def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take the named lease for ``ttl_seconds`` if it is free, expired, or already ours."""
        self._ensure_schema()
        return runs.acquire_lease(self._db, self.project, name, owner, ttl_seconds)

    def renew_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Extend a lease we hold; False if it expired and someone else took it."""
        self._ensure_schema()
        return runs.renew_lease(self._db, self.project, name, owner, ttl_seconds)

    def release_lease(self, name: str, owner: str) -> None:
        """Give a lease back (does nothing if we no longer hold it)."""
        self._ensure_schema()
        runs.release_lease(self._db, self.project, name, owner)

    def close(self) -> None:
        """Stop the refresher thread and close pooled connections."""
        self._cache.close()
        self._db.close()

    # -- internals --------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                with self._db.write() as conn:
                    create_schema(conn)
                self._schema_ready = True

    def _probe_version(self) -> int:
        self._ensure_schema()
        return self._db.read_retrying(lambda conn: _project_version(conn, self.project))

    def _load(self) -> RegistrySnapshot:
        self._ensure_schema()
        return self._db.read_retrying(self._read_snapshot)

    def _read_snapshot(self, conn: Connection) -> RegistrySnapshot:
        specs: dict[Kind, dict[str, Any]] = {}
        for kind in KINDS:
            table, column = OBJECT_TABLES[kind]
            rows = conn.execute(
                sa.select(table.c[column], table.c.spec).where(table.c.project_id == self.project)
            ).all()
            specs[kind] = {row[0]: row[1] for row in sorted(rows, key=lambda r: r[0])}
        try:
            entities = {n: Entity.from_spec(s) for n, s in specs["entity"].items()}
            sources: dict[str, DataSource] = {n: source_from_spec(s) for n, s in specs["data_source"].items()}
            views = {n: view_from_spec(s, entities) for n, s in specs["feature_view"].items()}
            services = {n: FeatureService.from_spec(s) for n, s in specs["feature_service"].items()}
            permissions = {n: Permission.from_spec(s) for n, s in specs["permission"].items()}
            odfvs = {n: OnDemandFeatureView.from_spec(s) for n, s in specs["on_demand_feature_view"].items()}
        except (DefinitionError, KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"project '{self.project}' holds a definition this Ladle cannot read: {exc}") from exc
        return RegistrySnapshot(
            project=self.project,
            version=_project_version(conn, self.project),
            entities=entities,
            data_sources=sources,
            feature_views=views,
            feature_services=services,
            permissions=permissions,
            versions=self._versions,
            on_demand_feature_views=odfvs,
        )

    def _bump_version(self, conn: Connection, expected: int | None, who: str, now: datetime) -> int:
        found = _project_version(conn, self.project)
        if expected is None:
            expected = found
        if expected == 0:
            if found != 0:
                raise self._conflict(conn, expected, found)
            conn.execute(
                projects.insert().values(
                    project_id=self.project,
                    version=1,
                    created_timestamp=now,
                    last_updated_timestamp=now,
                    last_applied_by=who,
                )
            )
            return 1
        # The WHERE re-checks the version under the row lock (PostgreSQL) / write lock (SQLite):
        # of two writers starting from the same version, the second updates zero rows.
        result = conn.execute(
            projects.update()
            .where(projects.c.project_id == self.project, projects.c.version == expected)
            .values(version=projects.c.version + 1, last_updated_timestamp=now, last_applied_by=who)
        )
        if result.rowcount != 1:
            raise self._conflict(conn, expected, _project_version(conn, self.project))
        return expected + 1

    def _conflict(self, conn: Connection, expected: int, found: int) -> ConflictError:
        row = conn.execute(
            sa.select(projects.c.last_applied_by, projects.c.last_updated_timestamp).where(
                projects.c.project_id == self.project
            )
        ).first()
        by = f" by {row.last_applied_by} at {row.last_updated_timestamp:%Y-%m-%d %H:%M:%S} UTC" if row else ""
        return ConflictError(
            f"registry project '{self.project}' changed since this apply read it (expected version {expected}, "
            f"found {found}{by}); nothing was applied. Run plan/apply again."
        )


def _after_fork(ref: weakref.ref[SqlRegistry]) -> None:
    registry = ref()
    if registry is not None:
        registry._db.engine.dispose(close=False)
        registry._cache.after_fork()


def _project_version(conn: Connection, project: str) -> int:
    value = conn.execute(sa.select(projects.c.version).where(projects.c.project_id == project)).scalar()
    return int(value) if value is not None else 0


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    result: datetime = value
    return as_utc(result)


def _current_hash(conn: Connection, project: str, kind: Kind, name: str) -> str | None:
    table, column = OBJECT_TABLES[kind]
    value = conn.execute(
        sa.select(table.c.content_hash).where(table.c[column] == name, table.c.project_id == project)
    ).scalar()
    return None if value is None else str(value)


def _changes_something(conn: Connection, project: str, change: ObjectChange) -> bool:
    current = _current_hash(conn, project, change.kind, change.name)
    if change.spec is None:
        return current is not None
    return current != content_hash(canonical_spec(change.spec))


def _write_change(
    conn: Connection, project: str, change: ObjectChange, project_version: int, who: str, now: datetime
) -> None:
    table, column = OBJECT_TABLES[change.kind]
    key = (table.c[column] == change.name, table.c.project_id == project)
    current = _current_hash(conn, project, change.kind, change.name)
    v = object_versions
    last = conn.execute(
        sa.select(sa.func.max(v.c.version)).where(
            v.c.project_id == project, v.c.object_kind == change.kind, v.c.object_name == change.name
        )
    ).scalar()
    record = {
        "project_id": project,
        "object_kind": change.kind,
        "object_name": change.name,
        "version": int(last or 0) + 1,
        "project_version": project_version,
        "applied_at": now,
        "applied_by": who,
    }
    if change.spec is None:
        if current is None:
            return
        conn.execute(table.delete().where(*key))
        conn.execute(v.insert().values(**record, content_hash="", spec=None))
        if change.kind == "feature_view":
            # A removed view's online rows are dropped too, so its watermark must go with them.
            mi = materialization_intervals
            conn.execute(mi.delete().where(mi.c.project_id == project, mi.c.feature_view_name == change.name))
        return
    spec = canonical_spec(change.spec)
    digest = content_hash(spec)
    if current == digest:
        return
    values = {"spec": spec, "version": record["version"], "content_hash": digest, "last_updated_timestamp": now}
    if current is None:
        keys = {column: change.name, "project_id": project, "created_timestamp": now}
        conn.execute(table.insert().values({**keys, **values}))
    else:
        conn.execute(table.update().where(*key).values(**values))
    conn.execute(v.insert().values(**record, content_hash=digest, spec=spec))
