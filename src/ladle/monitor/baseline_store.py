"""Drift baselines in the registry database: table ``monitor_baselines``, created on first use.

One row per saved baseline: ``name``, when it was saved and the whole :class:`Baseline` as JSON
(``payload``). Saving a name again adds a row; the newest row of a name is the baseline in
force, older rows are kept as history (a drift report can always be traced back to the exact
distribution it was compared with: the report payload carries the baseline's ``created_at``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ladle.errors import ObjectNotFoundError
from ladle.monitor.baseline import Baseline
from ladle.registry.extension import ExtensionTables
from ladle.registry.schema import UtcDateTime

metadata = sa.MetaData()

monitor_baselines = sa.Table(
    "monitor_baselines",
    metadata,
    sa.Column("baseline_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_monitor_baselines_name", "project_id", "name", "created_at"),
)

# Different from the registry's, the scheduler's and the reports' schema locks.
_PG_SCHEMA_LOCK = 0x1AD21  # distinct per extension (ladle.registry.extension)


class BaselineNotFoundError(ObjectNotFoundError):
    """No drift baseline by that name was saved in the project."""

    kind = "drift baseline"


class BaselineStore(ExtensionTables):
    """Saves and loads one project's drift baselines."""

    metadata = metadata
    schema_lock = _PG_SCHEMA_LOCK

    def save(self, baseline: Baseline) -> int:
        """Store ``baseline`` (it becomes the one in force for its name); return the row id."""
        self._schema()
        row = {
            "project_id": self.project,
            "name": baseline.name,
            "created_at": baseline.created_at,
            "payload": baseline.to_dict(),
        }
        with self._db.write() as conn:
            key = conn.execute(monitor_baselines.insert().values(**row)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def load(self, name: str) -> Baseline:
        """The newest baseline saved as ``name``; :class:`BaselineNotFoundError` lists the saved names."""
        self._schema()
        t = monitor_baselines
        query = (
            sa.select(t.c.payload)
            .where(t.c.project_id == self.project, t.c.name == name)
            .order_by(t.c.created_at.desc(), t.c.baseline_id.desc())
            .limit(1)
        )
        with self._db.read() as conn:
            payload = conn.execute(query).scalar_one_or_none()
        if payload is None:
            known = ", ".join(self.names()) or "none"
            raise BaselineNotFoundError(
                name, self.project, detail=f"Saved baselines: {known}. Save one with 'ladle monitor baseline'."
            )
        return Baseline.from_dict(payload)

    def names(self) -> list[str]:
        """The names of the saved baselines, sorted."""
        self._schema()
        t = monitor_baselines
        query = sa.select(t.c.name).where(t.c.project_id == self.project).distinct().order_by(t.c.name)
        with self._db.read() as conn:
            return [str(n) for n in conn.execute(query).scalars()]

    def summaries(self) -> list[dict[str, Any]]:
        """Name, save time, rows and features of the baseline in force for each name."""
        out = []
        for name in self.names():
            baseline = self.load(name)
            out.append(
                {
                    "name": name,
                    "created_at": baseline.created_at.isoformat(),
                    "rows": baseline.rows,
                    "features": sorted(baseline.features),
                }
            )
        return out


def as_of(value: datetime | None) -> str | None:
    """ISO form of an optional instant (for report payloads)."""
    return value.isoformat() if value is not None else None
