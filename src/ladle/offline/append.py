"""Appending rows to a Parquet source (``push(..., to="offline")``), atomically.

* **Directory or glob source**: the rows become one new file, ``part-<UTC time>-<uuid>.parquet``,
  in the directory (for a glob, the directory before the first wildcard; the name must match the
  glob). It is written under a hidden temporary name (``.part-….parquet.tmp``, which no reader
  lists) and renamed into place, so a reader sees all of the rows or none.
* **Single-file source**: Parquet files cannot be extended, so the file is rewritten as old rows
  + new rows into a hidden temporary file that then replaces it (atomic rename). Writers of the
  same file are serialized with an advisory lock (``.<name>.lock``). This costs a full rewrite per
  append: use a directory source for data that is pushed often.

Columns present in existing files are cast to their existing types (SchemaMismatchError if they
cannot be); readers combine files by column name, so a new column is NULL in older files.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from ladle.definitions import DataSource
from ladle.errors import DataSourceError, SchemaMismatchError
from ladle.offline.job import translate_errors
from ladle.offline.sources import SourceLocation, file_source, literal, open_scan

if TYPE_CHECKING:
    import duckdb


def append_rows(con: duckdb.DuckDBPyConnection, source: DataSource, repo_path: Path, rows: pa.Table) -> int:
    """Append ``rows`` (source column names) to the source's files; returns the number of rows."""
    batch = file_source(source)
    location = SourceLocation.of(batch, repo_path)
    ts = {v: k for k, v in batch.field_mapping.items()}.get(batch.timestamp_field, batch.timestamp_field)
    if ts not in rows.column_names:
        raise SchemaMismatchError(f"rows for source {batch.name or batch.path!r} have no timestamp column '{ts}'")
    if rows.num_rows == 0:
        return 0
    existing = location.files() if location.path.exists() or location.kind == "glob" else []
    if existing:
        rows = _conform(rows, open_scan(con, source, repo_path).arrow_schema)
    rows = rows.replace_schema_metadata(None)
    if location.kind == "file":
        _rewrite(con, location.path, rows, bool(existing))
    else:
        _add_file(location, rows)
    return int(rows.num_rows)


def _conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast the columns that existing files already have to their stored types."""
    for i, name in enumerate(rows.column_names):
        if name not in schema.names:
            continue
        target = schema.field(name).type
        if rows.schema.field(i).type.equals(target):
            continue
        try:
            if pa.types.is_string(rows.schema.field(i).type) and _nested(target):
                column = _from_json_text(rows.column(i), target)  # Map / Json / Struct values into a nested column
            else:
                column = rows.column(i).cast(target)
            rows = rows.set_column(i, name, column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError) as exc:
            raise SchemaMismatchError(
                f"column '{name}' is {rows.schema.field(i).type} but the source stores {target}: {exc}"
            ) from exc
    return rows


def _nested(kind: pa.DataType) -> bool:
    return bool(pa.types.is_struct(kind) or pa.types.is_map(kind) or pa.types.is_list(kind))


def _from_json_text(column: pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    """JSON texts (how Ladle carries Map / Json / Struct values) as the source's nested column type."""
    values = [None if text is None else json.loads(text) for text in column.to_pylist()]
    if pa.types.is_map(target):
        values = [None if v is None else list(v.items()) for v in values]
    return pa.array(values, type=target)


def _add_file(location: SourceLocation, rows: pa.Table) -> None:
    root = location.root
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = root / f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    if location.kind == "glob" and not fnmatch.fnmatch(str(final), str(location.path)):
        raise DataSourceError(
            f"cannot append to glob source {location.path}: a new file {final.name} would not match the glob; "
            "use a directory path or a glob such as 'dir/*.parquet'"
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{final.name}.tmp"
    try:
        pq.write_table(rows, tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path.with_name(f".{path.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _rewrite(con: duckdb.DuckDBPyConnection, path: Path, rows: pa.Table, exists: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    with _file_lock(path):
        try:
            if not exists or not path.exists():
                pq.write_table(rows, tmp)
            else:
                con.register("__ladle_new_rows", rows)
                query = (
                    f"SELECT * FROM read_parquet({literal(str(path))}, hive_partitioning = false) "
                    "UNION ALL BY NAME SELECT * FROM __ladle_new_rows"
                )
                with translate_errors(f"appending to {path}"):
                    con.execute(f"COPY ({query}) TO {literal(str(tmp))} (FORMAT parquet)")
                con.unregister("__ladle_new_rows")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
