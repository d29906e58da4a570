"""Iceberg offline store factory for the conformance suite: a SQLite catalog and a local warehouse.

Each source table is written as two appends (two snapshots, rows split in half), so every case
also covers an entity's rows spread over several data files and snapshots. The catalog and the
warehouse live in a directory of their own for every call (the suite may build several stores
in one test), under ``tmp_path``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from ladle import FileSource
from ladle.definitions import DataSource
from ladle.offline.iceberg.catalog import table_ref
from ladle.offline.iceberg.store import IcebergOfflineStore
from ladle.offline.iceberg.tables import ensure_table

from .offline_backends import OfflineSetup, SourceTable, open_store

#: Cases the Iceberg store cannot pass (test name → reason).
GAPS: dict[str, str] = {}


def iceberg_rows(table: pa.Table) -> pa.Table:
    """Rows as Iceberg can hold them: timestamps in microseconds (``timestamptz`` or naive ``timestamp``).

    Iceberg (format v2) has no nanosecond, millisecond or second timestamps; the same instants are
    stored at microsecond precision (the suite's times are whole microseconds).
    """
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type) and field.type.unit != "us":
            column = column.cast(pa.timestamp("us", tz="UTC" if field.type.tz else None))
        elif pa.types.is_timestamp(field.type) and field.type.tz not in (None, "UTC"):
            column = column.cast(pa.timestamp("us", tz="UTC"))
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def store_tables(
    tables: Mapping[str, SourceTable], repo: Path, block: Mapping[str, Any]
) -> tuple[IcebergOfflineStore, dict[str, DataSource], Any]:
    """Open the store ``block`` configures in ``repo`` and append each table in two halves."""
    store, config = open_store(repo, block)
    assert isinstance(store, IcebergOfflineStore)
    sources: dict[str, DataSource] = {}
    for name, spec in tables.items():
        source = FileSource(
            name=name,
            path=f"data/{name}/",
            timestamp_field=spec.timestamp_field,
            created_timestamp_column=spec.created_timestamp_column,
        )
        rows = iceberg_rows(spec.table)
        if rows.num_rows == 0:  # an existing, empty table with the given columns
            ref = table_ref(source, store.config)
            ensure_table(store.catalogs.get(ref.catalog), ref, rows.schema, spec.timestamp_field)
        half = rows.num_rows // 2
        for part in (rows.slice(0, half), rows.slice(half)):
            if part.num_rows:
                store.append(source, part)
        sources[name] = source
    return store, sources, config


def make_iceberg(tables: Mapping[str, SourceTable], tmp_path: Path) -> OfflineSetup:
    """The tables in a SQLite catalog and a file warehouse of their own under ``tmp_path``."""
    repo = tmp_path / f"iceberg-{uuid.uuid4().hex[:8]}"
    repo.mkdir()
    block = {
        "type": "iceberg",
        "catalog": {"type": "sql", "uri": "sqlite:///catalog.db", "warehouse": "warehouse"},
        "namespace": "conformance",
        "threads": 1,
    }
    store, sources, config = store_tables(tables, repo, block)
    return OfflineSetup(store, sources, config, [store.close])
