"""The registry's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

One table per object kind, named as in Feast (``entities``, ``data_sources``, ``feature_views``,
``feature_services``, ``permissions``, ``projects``), each row holding the object's current spec as readable JSON.
Every stored change also gets a row in ``object_versions``. Materialization intervals, runs and
scheduler leases have their own tables so that no object row grows without bound.
See docs/registry.md for the meaning of every column.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from ladle.errors import RegistryError

#: Bumped whenever a table changes shape; stored in ``ladle_metadata``.
SCHEMA_VERSION = 1


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes stored as naive UTC (readable on SQLite, comparable in SQL on both)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to naive UTC before writing."""
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Mark values read back as UTC."""
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData()

ladle_metadata = sa.Table(
    "ladle_metadata",
    metadata,
    sa.Column("metadata_key", sa.String(100), primary_key=True),
    sa.Column("metadata_value", sa.Text, nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_timestamp", UtcDateTime, nullable=False),
    sa.Column("last_updated_timestamp", UtcDateTime, nullable=False),
    sa.Column("last_applied_by", sa.Text, nullable=False),
)


def _object_table(table_name: str, name_column: str) -> sa.Table:
    return sa.Table(
        table_name,
        metadata,
        sa.Column(name_column, sa.String(255), primary_key=True),
        sa.Column("project_id", sa.String(255), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_timestamp", UtcDateTime, nullable=False),
        sa.Column("last_updated_timestamp", UtcDateTime, nullable=False),
    )


#: Registry kind → (table, name column).
OBJECT_TABLES: dict[str, tuple[sa.Table, str]] = {
    "entity": (_object_table("entities", "entity_name"), "entity_name"),
    "data_source": (_object_table("data_sources", "data_source_name"), "data_source_name"),
    "feature_view": (_object_table("feature_views", "feature_view_name"), "feature_view_name"),
    "feature_service": (_object_table("feature_services", "feature_service_name"), "feature_service_name"),
    # Added after schema version 1 shipped: create_schema's create_all adds it to older databases.
    "permission": (_object_table("permissions", "permission_name"), "permission_name"),
}

object_versions = sa.Table(
    "object_versions",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("object_kind", sa.String(32), primary_key=True),
    sa.Column("object_name", sa.String(255), primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("spec", sa.JSON, nullable=True),  # NULL marks a deletion
    sa.Column("project_version", sa.BigInteger, nullable=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
    sa.Column("applied_by", sa.Text, nullable=False),
)

materialization_intervals = sa.Table(
    "materialization_intervals",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("feature_view_name", sa.String(255), nullable=False),
    sa.Column("start_time", UtcDateTime, nullable=False),
    sa.Column("end_time", UtcDateTime, nullable=False),
    sa.Column("rows_written", sa.BigInteger, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index("ix_materialization_intervals_view", "project_id", "feature_view_name", "end_time"),
)

materialization_runs = sa.Table(
    "materialization_runs",
    metadata,
    sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("feature_view_name", sa.String(255), nullable=False),
    sa.Column("start_time", UtcDateTime, nullable=False),
    sa.Column("end_time", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("rows_written", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_materialization_runs_view", "project_id", "feature_view_name", "started_at"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("lease_name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("acquired_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)

#: Every table holding per-project rows, for teardown.
PROJECT_TABLES: tuple[sa.Table, ...] = (
    *(table for table, _ in OBJECT_TABLES.values()),
    object_versions,
    materialization_intervals,
    materialization_runs,
    leases,
    projects,
)

#: Per-project tables other modules create in the registry database (the scheduler's journal,
#: ladle.registry.schedule_runs, the monitors' ladle.registry.reports); teardown deletes the
#: project's rows from them when they exist.
EXTENSION_TABLES: tuple[str, ...] = ("schedule_state", "schedule_runs", "monitor_reports")

# Any constant works: it only has to be the same in every Ladle process sharing the database.
_PG_SCHEMA_LOCK = 0x1AD1E


def create_schema(conn: Connection) -> None:
    """Create missing tables and record the schema version, inside the caller's write transaction.

    The caller's transaction is ``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL an advisory lock
    serializes processes that start at the same moment, so neither sees a half-created schema.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
    metadata.create_all(conn, checkfirst=True)
    row = conn.execute(
        sa.select(ladle_metadata.c.metadata_value).where(ladle_metadata.c.metadata_key == "schema_version")
    ).first()
    if row is None:
        now = datetime.now(UTC).isoformat()
        conn.execute(
            ladle_metadata.insert(),
            [
                {"metadata_key": "schema_version", "metadata_value": str(SCHEMA_VERSION)},
                {"metadata_key": "created_at", "metadata_value": now},
            ],
        )
        return
    stored = int(row[0])
    if stored > SCHEMA_VERSION:
        raise RegistryError(
            f"the registry schema is version {stored} but this Ladle understands up to {SCHEMA_VERSION}; upgrade Ladle"
        )
