"""Iceberg offline store factory on a PostgreSQL catalog (pyiceberg's SQL catalog over psycopg 3).

The catalog's rows live in the ``postgres`` database at 127.0.0.1:5432 (``postgres_server``
fixture: skipped loudly when the server is down, a failure under CI=true), keyed by a catalog
name of their own for every call, in a namespace of their own; the data files in a warehouse
under ``tmp_path``. Cleanup drops the tables and the namespace.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from .offline_backends import OfflineSetup, SourceTable
from .offline_iceberg import GAPS as SQLITE_GAPS
from .offline_iceberg import store_tables

#: Cases the Iceberg store cannot pass on a PostgreSQL catalog (test name → reason).
GAPS: dict[str, str] = dict(SQLITE_GAPS)


def make_iceberg_pg(tables: Mapping[str, SourceTable], tmp_path: Path, postgres_server: str) -> OfflineSetup:
    """The tables in a PostgreSQL-backed catalog of their own, data files under ``tmp_path``."""
    tag = uuid.uuid4().hex[:10]
    repo = tmp_path / f"iceberg-pg-{tag}"
    repo.mkdir()
    uri = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    block = {
        "type": "iceberg",
        "catalog": {"type": "sql", "uri": uri, "warehouse": "warehouse"},
        "catalog_name": f"conf_{tag}",
        "namespace": f"conf_{tag}",
        "threads": 1,
    }
    store, sources, config = store_tables(tables, repo, block)
    catalog = store.catalogs.get()

    def drop() -> None:
        try:
            if catalog.namespace_exists(f"conf_{tag}"):
                for identifier in catalog.list_tables(f"conf_{tag}"):
                    catalog.drop_table(identifier)
                catalog.drop_namespace(f"conf_{tag}")
        finally:  # never leave the catalog's connection pool open on the shared server
            engine = getattr(catalog, "engine", None)
            if engine is not None:
                engine.dispose()

    return OfflineSetup(store, sources, config, [drop, store.close])
