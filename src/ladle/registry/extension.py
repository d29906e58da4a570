"""Tables other modules keep in the registry database, created on first use (the extension tables).

:class:`ExtensionTables` is what every such store shares: one project's view of its tables on a
:class:`~ladle.registry.engine.Database`, and their creation, once per instance, under a PostgreSQL
advisory lock of its own (so two processes starting together never see half-created tables, and
never wait on the registry's own schema lock). Subclasses set :attr:`metadata` and
:attr:`schema_lock`; ``ladle.registry.schema.EXTENSION_TABLES`` lists the tables for teardown.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import sqlalchemy as sa

from ladle.config import RegistryConfig
from ladle.registry.engine import Database


class ExtensionTables:
    """One project's rows in some extension tables (see the module docstring)."""

    #: The subclass's tables.
    metadata: ClassVar[sa.MetaData]
    #: Its PostgreSQL advisory-lock key: distinct per subclass, the same in every Ladle process.
    schema_lock: ClassVar[int]

    def __init__(self, db: Database, project: str) -> None:
        self._db = db
        self.project = project
        self._ready = False

    @classmethod
    def open(cls, config: RegistryConfig, project: str, repo_path: Path) -> Self:
        """An instance on the registry database described by ``config``."""
        return cls(Database(config, repo_path), project)

    def close(self) -> None:
        """Close pooled connections."""
        self._db.close()

    def _schema(self) -> None:
        """Create the tables if they are missing (once per instance)."""
        if self._ready:
            return
        with self._db.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.schema_lock})
            self.metadata.create_all(conn, checkfirst=True)
        self._ready = True
