"""Writes to the Iceberg tables behind sources: appends (offline pushes) and window replacements (ingest).

Each write is **one snapshot in one commit**: readers, and time travel, see all of its rows or
none. Every snapshot Ladle writes carries ``ladle.rows-sha256`` in its summary: the SHA-256 of the
rows as stored (Arrow IPC of the conformed table; for a window replacement also the window).

* :func:`append_rows` is idempotent on retry: rows whose hash is that of one of the table's
  :data:`RECENT` newest snapshots (following the current snapshot's parents) were written
  already (say, a push whose reply was lost), so nothing is added and 0 is returned.
* :func:`replace_window` deletes the rows with ``start <= event_ts < end`` and adds ``rows`` in
  one overwrite snapshot: data files entirely inside the window are dropped, files straddling it
  are rewritten without the window's rows. When the current snapshot already is the same
  replacement (same window, same rows), nothing is committed.

Columns the rows add are added in the write's own transaction (schema evolution and rows in one
commit); existing columns' types are checked before anything is written, so a type error leaves
the table as it was. The first write to a missing table creates it (and its namespace).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from ladle.errors import DataSourceError, SchemaMismatchError
from ladle.offline.iceberg.catalog import TableRef, brief
from ladle.offline.iceberg.tables import conform, conform_to, ensure_table, load_table, new_columns

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import FileScanTask, Table, Transaction

#: snapshot summary property holding the SHA-256 of the rows a Ladle write stored
ROWS_HASH = "ladle.rows-sha256"
#: how many of the newest snapshots an append's retry check looks at
RECENT = 100
_US = pa.timestamp("us", tz="UTC")


def rows_hash(rows: pa.Table, extra: str = "") -> str:
    """SHA-256 (hex) of ``rows`` as Arrow IPC, and of ``extra``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    digest = hashlib.sha256(sink.getvalue())  # the buffer itself: no bytes copy of the whole IPC stream
    digest.update(extra.encode())
    return digest.hexdigest()


def recent_hashes(table: Table, limit: int = RECENT) -> set[str]:
    """The row hashes of the current snapshot and its ancestors, newest first, ``limit`` at most."""
    found: set[str] = set()
    snapshot = table.current_snapshot()
    for _ in range(limit):
        if snapshot is None:
            break
        value = snapshot.summary.get(ROWS_HASH) if snapshot.summary is not None else None
        if value:
            found.add(value)
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return found


def _precheck(catalog: Catalog, ref: TableRef, rows: pa.Table) -> None:
    """SchemaMismatchError if ``rows`` cannot be stored in the existing table's columns (nothing written)."""
    table = load_table(catalog, ref)
    stored = table.schema().as_arrow().names if table is not None else []
    untyped = [f.name for f in rows.schema if pa.types.is_null(f.type) and f.name not in stored]
    if untyped:
        raise SchemaMismatchError(
            f"columns {untyped} for {ref} have no type (every value is null), so the table cannot store them; "
            "give them a type or leave them out"
        )
    if table is not None:
        conform(rows.select([n for n in rows.column_names if n in stored]), table)


class _Retry(Exception):
    """Aborts a transaction whose rows a recent snapshot already holds."""


def _prepared(
    catalog: Catalog, ref: TableRef, rows: pa.Table, timestamp_column: str, partition_by: str
) -> tuple[Table, list[pa.Field]]:
    """The table (created if missing) and the columns ``rows`` add to it; SchemaMismatchError before
    anything is written when a column cannot be stored."""
    if timestamp_column not in rows.column_names:
        raise SchemaMismatchError(f"rows for {ref} have no timestamp column '{timestamp_column}'")
    _precheck(catalog, ref, rows)
    table = load_table(catalog, ref)
    if table is None:
        return ensure_table(catalog, ref, rows.schema, timestamp_column, partition_by), []
    return table, new_columns(rows.schema, table)


def _stage(tx: Transaction, ref: TableRef, added: list[pa.Field], rows: pa.Table) -> pa.Table:
    """Stage the new columns in the write's own transaction (one commit with the data); the rows as stored."""
    if added:
        try:
            with tx.update_schema() as update:
                update.union_by_name(pa.schema(added))
        except Exception as exc:  # pyiceberg's ValidationError and friends
            raise SchemaMismatchError(f"cannot add columns {[f.name for f in added]} to {ref}: {brief(exc)}") from exc
    return conform_to(rows, tx.table_metadata.schema().as_arrow())


def append_rows(catalog: Catalog, ref: TableRef, rows: pa.Table, timestamp_column: str, partition_by: str) -> int:
    """Append ``rows`` (source column names) in one snapshot (with any new columns, in one commit);
    0 if they are a retry of a recent append."""
    if timestamp_column not in rows.column_names:
        raise SchemaMismatchError(f"rows for {ref} have no timestamp column '{timestamp_column}'")
    if rows.num_rows == 0:
        return 0
    rows = rows.replace_schema_metadata(None)
    table, added = _prepared(catalog, ref, rows, timestamp_column, partition_by)

    def write() -> int:
        with table.transaction() as tx:
            stored = _stage(tx, ref, added, rows)
            digest = rows_hash(stored)
            if digest in recent_hashes(table):
                raise _Retry
            tx.append(stored, snapshot_properties={ROWS_HASH: digest})
        return int(stored.num_rows)

    try:
        return _commit(ref, write)
    except _Retry:
        return 0


def replace_window(
    catalog: Catalog,
    ref: TableRef,
    rows: pa.Table,
    timestamp_column: str,
    start: datetime,
    end: datetime,
    partition_by: str,
) -> int:
    """Make the rows with ``start <= event_ts < end`` equal to ``rows`` (rows outside the window are
    ignored) in one overwrite snapshot; returns the number of rows written."""
    if timestamp_column not in rows.column_names:
        raise SchemaMismatchError(f"rows for {ref} have no timestamp column '{timestamp_column}'")
    rows = rows.replace_schema_metadata(None)
    if start >= end:
        raise DataSourceError(f"replace_window on {ref}: start {start.isoformat()} is not before end {end.isoformat()}")
    lo, hi = pa.scalar(start, _US), pa.scalar(end, _US)
    if rows.num_rows:
        stamps = rows.column(timestamp_column).cast(_US)
        rows = rows.filter(pc.and_(pc.greater_equal(stamps, lo), pc.less(stamps, hi)).fill_null(False))
    if not rows.num_rows and load_table(catalog, ref) is None:
        return 0  # no table and nothing to write
    table, added = _prepared(catalog, ref, rows, timestamp_column, partition_by)
    lo_us, hi_us = int(lo.cast(pa.int64()).as_py()), int(hi.cast(pa.int64()).as_py())
    written = _commit(ref, lambda: _overwrite(table, ref, added, rows, timestamp_column, lo_us, hi_us))
    return int(written)


def _overwrite(
    table: Table, ref: TableRef, added: list[pa.Field], rows: pa.Table, timestamp_column: str, lo_us: int, hi_us: int
) -> int:
    """The window replacement as one transaction: new columns, then one overwrite snapshot."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    window = And(GreaterThanOrEqual(term=timestamp_column, value=lo_us), LessThan(term=timestamp_column, value=hi_us))
    tasks = list(table.scan(row_filter=window).plan_files()) if table.current_snapshot() else []
    try:
        with table.transaction() as tx:
            rows = _stage(tx, ref, added, rows)
            digest = rows_hash(rows, f"window:{lo_us}:{hi_us}")
            current = table.current_snapshot()
            if current is not None and current.summary is not None and current.summary.get(ROWS_HASH) == digest:
                raise _Retry  # the current snapshot is this very replacement
            if not tasks and rows.num_rows == 0:
                raise _Retry  # nothing to delete, nothing to add
            _replace(tx, table, tasks, rows, timestamp_column, lo_us, hi_us, digest)
    except _Retry:
        pass
    return int(rows.num_rows)


def _replace(
    tx: Transaction,
    table: Table,
    tasks: list[FileScanTask],
    rows: pa.Table,
    timestamp_column: str,
    lo_us: int,
    hi_us: int,
    digest: str,
) -> None:
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files

    metadata = tx.table_metadata
    with tx.update_snapshot(snapshot_properties={ROWS_HASH: digest}).overwrite() as overwrite:
        counter = itertools.count(0)
        for task in tasks:
            existing = ArrowScan(metadata, table.io, metadata.schema(), AlwaysTrue()).to_table([task])
            stamps = existing.column(timestamp_column).cast(pa.int64())
            inside = pc.and_(pc.greater_equal(stamps, lo_us), pc.less(stamps, hi_us)).fill_null(False)
            kept = existing.filter(pc.invert(inside))
            overwrite.delete_data_file(task.file)
            if kept.num_rows:
                for data_file in _dataframe_to_data_files(metadata, kept, table.io, overwrite.commit_uuid, counter):
                    overwrite.append_data_file(data_file)
        if rows.num_rows:
            for data_file in _dataframe_to_data_files(metadata, rows, table.io, overwrite.commit_uuid, counter):
                overwrite.append_data_file(data_file)


def _commit(ref: TableRef, write: Callable[[], int]) -> int:
    """Run a write; catalog and storage failures are DataSourceError (nothing was committed)."""
    from pyiceberg.exceptions import CommitFailedException

    try:
        return write()
    except (SchemaMismatchError, _Retry):
        raise
    except CommitFailedException as exc:
        raise DataSourceError(f"writing to {ref}: a concurrent commit won; retry the write ({brief(exc)})") from exc
    except Exception as exc:
        raise DataSourceError(f"writing to {ref} failed: {brief(exc)}") from exc


def erase_rows(table: Table, keys: Mapping[str, object], dry_run: bool = False) -> int:
    """Delete (or count) the rows whose columns equal ``keys`` with one row-level delete; return how many.

    Columns the table lacks match nothing (0). The count is a scan of the key columns before the delete.
    """
    from pyiceberg.expressions import And, BooleanExpression, EqualTo

    if not set(keys) <= set(table.schema().column_names):
        return 0
    tests: list[BooleanExpression] = [EqualTo(term=name, value=value) for name, value in keys.items()]
    expression = tests[0] if len(tests) == 1 else And(*tests)
    found = table.scan(row_filter=expression, selected_fields=tuple(keys)).to_arrow().num_rows
    if found and not dry_run:
        table.delete(delete_filter=expression)
    return int(found)
