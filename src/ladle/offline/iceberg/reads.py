"""Reading an Iceberg table into a DuckDB query: scan planning with pushdown, then a :class:`SourceScan`.

pyiceberg plans the scan: the row filter on the event-time column prunes whole partitions (the
day partitions :func:`~ladle.offline.iceberg.tables.ensure_table` makes) and data files whose
column statistics lie outside the window. What DuckDB then reads (docs/iceberg.md, "Reads"):

* **direct** (the usual case): the planned data files are local Parquet with no delete files, so
  DuckDB reads them itself with ``read_parquet(files, schema = MAP {field id: {name, type}})``.
  Columns are matched by Iceberg field id, so renamed columns read under their current names and
  columns added after a file was written read as NULL, exactly as Iceberg defines. DuckDB then
  reads only the columns the query uses and skips row groups by their statistics.
* **arrow**: otherwise (delete files to apply, object storage, files without field ids, column
  types DuckDB cannot be told) pyiceberg's Arrow batch reader reads the planned files, selected
  columns only, into a DuckDB temporary table (which spills to ``temp_directory`` beyond
  ``memory_limit``), and the query reads that table.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from ladle.definitions import DataSource, FeatureView
from ladle.errors import DataSourceError
from ladle.offline.computed import is_computed
from ladle.offline.iceberg.catalog import brief
from ladle.offline.job import translate_errors
from ladle.offline.sources import ROW_ID, SourceScan, literal, quote

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema
    from pyiceberg.table import FileScanTask, Table
    from pyiceberg.table.snapshots import Snapshot
    from pyiceberg.types import IcebergType, NestedField

_names = itertools.count()
_NAME_MAPPING = "schema.name-mapping.default"
#: pushdown bounds are widened by this much (µs); the SQL tests the exact window
_SLACK_US = 1_000


@dataclass(frozen=True)
class Pinned:
    """A source's table and the snapshot a read uses (None: the table has no snapshot, so no rows)."""

    label: str  # the source's name (the key of ``job.snapshots``)
    table: Table
    snapshot: Snapshot | None

    @property
    def snapshot_id(self) -> int:
        """The snapshot id, or -1 for a table without one (read as empty)."""
        return self.snapshot.snapshot_id if self.snapshot is not None else -1


def duck_type(kind: IcebergType) -> str | None:
    """The DuckDB type of an Iceberg type, or None when DuckDB cannot be told it (the arrow path reads it)."""
    from pyiceberg import types as t

    simple: dict[type, str] = {
        t.BooleanType: "BOOLEAN",
        t.IntegerType: "INTEGER",
        t.LongType: "BIGINT",
        t.FloatType: "FLOAT",
        t.DoubleType: "DOUBLE",
        t.DateType: "DATE",
        t.TimeType: "TIME",
        t.TimestampType: "TIMESTAMP",
        t.TimestamptzType: "TIMESTAMPTZ",
        t.StringType: "VARCHAR",
        t.UUIDType: "UUID",
        t.BinaryType: "BLOB",
        t.FixedType: "BLOB",
    }
    if type(kind) in simple:
        return simple[type(kind)]
    if isinstance(kind, t.DecimalType):
        return f"DECIMAL({kind.precision}, {kind.scale})"
    if isinstance(kind, t.ListType):
        element = duck_type(kind.element_type)
        return None if element is None else f"{element}[]"
    return None


def columns_of(pinned: Pinned) -> list[NestedField]:
    """The columns a read sees: the table's current schema (renamed columns by their new names, added
    columns NULL in older data), plus columns the pinned snapshot had that were dropped since."""
    current = pinned.table.schema()
    fields = list(current.fields)
    snapshot = pinned.snapshot
    if snapshot is not None and snapshot.schema_id is not None and snapshot.schema_id != current.schema_id:
        old = pinned.table.schemas().get(snapshot.schema_id)
        if old is not None:
            ids, names = {f.field_id for f in fields}, {f.name for f in fields}
            fields += [f for f in old.fields if f.field_id not in ids and f.name not in names]
    return fields


def _scan_schema(pinned: Pinned) -> Schema:
    """The schema pyiceberg binds a scan of the pinned snapshot to (the snapshot's own)."""
    snapshot = pinned.snapshot
    if snapshot is not None and snapshot.schema_id is not None:
        schema = pinned.table.schemas().get(snapshot.schema_id)
        if schema is not None:
            return schema
    return pinned.table.schema()


def _scan_names(pinned: Pinned, fields: list[NestedField]) -> dict[str, str]:
    """Current column name → its name in the pinned snapshot's schema, for the columns it has."""
    by_id = {f.field_id: f.name for f in _scan_schema(pinned).fields}
    return {f.name: by_id[f.field_id] for f in fields if f.field_id in by_id}


def window_filter(pinned: Pinned, column: str, lo_us: int | None, hi_us: int | None) -> BooleanExpression:
    """The pushdown row filter ``lo <= column <= hi`` (either bound optional; widened by a millisecond)
    when ``column`` is a timestamp; else no filter."""
    from pyiceberg import types as t
    from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThanOrEqual

    expr: BooleanExpression = AlwaysTrue()
    field = next((f for f in pinned.table.schema().fields if f.name == column), None)
    if field is None or not isinstance(field.field_type, (t.TimestampType, t.TimestamptzType)):
        return expr
    name = _scan_names(pinned, [field]).get(column)
    if name is None:
        return expr
    if lo_us is not None:
        expr = And(expr, GreaterThanOrEqual(term=name, value=lo_us - _SLACK_US))
    if hi_us is not None:
        expr = And(expr, LessThanOrEqual(term=name, value=hi_us + _SLACK_US))
    return expr


def plan(pinned: Pinned, row_filter: BooleanExpression) -> list[FileScanTask]:
    """The data files (with their delete files) the scan must read; DataSourceError if unreadable."""
    if pinned.snapshot is None:
        return []
    try:
        scan = pinned.table.scan(row_filter=row_filter, snapshot_id=pinned.snapshot.snapshot_id)
        return list(scan.plan_files())
    except Exception as exc:  # manifests unreadable, file IO errors
        raise DataSourceError(f"source {pinned.label!r}: cannot plan the iceberg scan: {brief(exc)}") from exc


def in_commit_order(pinned: Pinned, tasks: list[FileScanTask]) -> list[FileScanTask]:
    """The tasks ordered by the commit that added their file (data sequence number), then file name.

    A computed stream view keeps, of events with the same key and time, the one that comes last
    in its input (docs/streaming.md, rule 4): on Iceberg, the one committed last.
    """
    if len(tasks) < 2 or pinned.snapshot is None:
        return tasks
    try:
        entries = pinned.table.inspect.entries(pinned.snapshot.snapshot_id)
    except Exception as exc:
        raise DataSourceError(f"source {pinned.label!r}: cannot read the iceberg manifests: {brief(exc)}") from exc
    paths = entries.column("data_file").combine_chunks().field("file_path").to_pylist()
    sequence = dict(zip(paths, entries.column("sequence_number").to_pylist(), strict=True))
    return sorted(tasks, key=lambda t: (sequence.get(t.file.file_path) or 0, t.file.file_path))


def read_path(pinned: Pinned, tasks: list[FileScanTask], fields: list[NestedField]) -> Literal["direct", "arrow"]:
    """Whether DuckDB can read the planned files itself (see the module docstring)."""
    if pinned.table.properties.get(_NAME_MAPPING):
        return "arrow"  # files written without field ids (e.g. added with add_files)
    if any(duck_type(f.field_type) is None for f in fields):
        return "arrow"
    for task in tasks:
        if task.delete_files or not _local(task.file.file_path):
            return "arrow"
    return "direct"


def _local(path: str) -> bool:
    return path.startswith(("file:/", "/"))


def _local_path(path: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(path).path) if path.startswith("file:") else path


def _typed_nulls(fields: list[NestedField]) -> str:
    cols = [f"NULL::{duck_type(f.field_type) or 'VARCHAR'} AS {quote(f.name)}" for f in fields]
    return "SELECT " + ", ".join(cols)


def empty_scan(
    con: duckdb.DuckDBPyConnection, label: str, fields: list[NestedField], mapping: dict[str, str]
) -> SourceScan:
    """A scan with the columns and no rows (a table without snapshot, or nothing in the window)."""
    rel = con.sql(f"{_typed_nulls(fields)}, NULL::BIGINT AS {ROW_ID} LIMIT 0")
    rows = rel.to_arrow_table()
    name = f"__ladle_iceberg_{next(_names)}"
    con.register(name, rows)
    return _scan_of(con, label, name, mapping, f"SELECT * FROM {quote(name)} LIMIT 0")


def _scan_of(con: duckdb.DuckDBPyConnection, label: str, table: str, mapping: dict[str, str], probe: str) -> SourceScan:
    rel = con.sql(probe)
    types = {n: str(t) for n, t in zip(rel.columns, rel.types, strict=True) if n != ROW_ID}
    schema = rel.to_arrow_table().schema
    schema = pa.schema([f for f in schema if f.name != ROW_ID])
    return SourceScan(label, (), types, schema, mapping, table=table)


def direct_scan(
    con: duckdb.DuckDBPyConnection,
    label: str,
    tasks: list[FileScanTask],
    fields: list[NestedField],
    mapping: dict[str, str],
) -> SourceScan:
    """DuckDB reads the planned data files, columns matched by field id."""
    entries = ", ".join(
        f"{f.field_id}: {{name: {literal(f.name)}, type: {literal(duck_type(f.field_type) or '')}, "
        "default_value: NULL}"
        for f in fields
    )
    files = tuple(_local_path(task.file.file_path) for task in tasks)
    probe = con.sql(_typed_nulls(fields) + " LIMIT 0")
    types = {n: str(t) for n, t in zip(probe.columns, probe.types, strict=True)}
    return SourceScan(
        label, files, types, probe.to_arrow_table().schema, mapping, read_options=f"schema = MAP {{{entries}}}"
    )


def arrow_scan(
    con: duckdb.DuckDBPyConnection,
    pinned: Pinned,
    tasks: list[FileScanTask],
    row_filter: BooleanExpression,
    fields: list[NestedField],
    mapping: dict[str, str],
    schema: pa.Schema,
) -> SourceScan:
    """pyiceberg reads the planned files, in order (deletes applied, selected columns), into a DuckDB
    temp table.

    ``schema`` holds the columns' Arrow types as the direct path reads them; columns are selected
    by field id (under their names in the snapshot's schema), and columns the snapshot lacks are NULL.
    """
    from pyiceberg.io.pyarrow import ArrowScan

    names = _scan_names(pinned, fields)
    table = pinned.table
    try:
        projected = _scan_schema(pinned).select(*names.values())
        reader = ArrowScan(table.metadata, table.io, projected, row_filter).to_record_batches(tasks)
    except Exception as exc:
        raise DataSourceError(f"source {pinned.label!r}: cannot read the iceberg table: {brief(exc)}") from exc
    out = pa.schema([*(schema.field(f.name) for f in fields), pa.field(ROW_ID, pa.int64())])
    numbered = pa.RecordBatchReader.from_batches(out, _numbered(reader, out, names, pinned.label))
    source, name = f"__ladle_iceberg_src_{next(_names)}", f"__ladle_iceberg_{next(_names)}"
    con.register(source, numbered)
    with translate_errors(f"reading iceberg source {pinned.label!r}"):
        con.execute(f"CREATE TEMP TABLE {quote(name)} AS SELECT * FROM {quote(source)}")
    con.unregister(source)
    return _scan_of(con, pinned.label, name, mapping, f"SELECT * FROM {quote(name)} LIMIT 0")


def _numbered(
    reader: Iterator[pa.RecordBatch], schema: pa.Schema, names: dict[str, str], label: str
) -> Iterator[pa.RecordBatch]:
    offset = 0
    try:
        for batch in reader:
            arrays = []
            for field in schema:
                if field.name == ROW_ID:
                    arrays.append(pa.array(range(offset, offset + batch.num_rows), pa.int64()))
                elif field.name in names:
                    arrays.append(batch.column(names[field.name]).cast(field.type))
                else:
                    arrays.append(pa.nulls(batch.num_rows, field.type))
            offset += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
    except DataSourceError:
        raise
    except Exception as exc:
        raise DataSourceError(f"source {label!r}: cannot read iceberg data: {brief(exc)}") from exc


def needed_columns(view: FeatureView, source: DataSource, fields: list[NestedField]) -> list[NestedField]:
    """The columns a read of ``view`` uses (every column for a computed view: its udf may read any)."""
    if is_computed(view):
        return fields
    inverse = {dst: src for src, dst in source.field_mapping.items()}
    wanted = {f.name for f in [*view.entity_columns, *view.features]}
    wanted |= {source.timestamp_field, source.created_timestamp_column} - {""}
    columns = {inverse.get(name, name) for name in wanted}
    return [f for f in fields if f.name in columns]


def open_scan(
    con: duckdb.DuckDBPyConnection,
    pinned: Pinned,
    source: DataSource,
    view: FeatureView,
    lo_us: int | None,
    hi_us: int | None,
) -> tuple[SourceScan, str]:
    """The scan of ``pinned`` for ``view``'s rows with event time in ``[lo, hi]`` (bounds optional; rows
    outside may be included, the SQL filters exactly), and which path reads it."""
    mapping = {dst: src for src, dst in source.field_mapping.items()}
    fields = columns_of(pinned)
    ts_column = mapping.get(source.timestamp_field, source.timestamp_field)
    row_filter = window_filter(pinned, ts_column, lo_us, hi_us)
    tasks = plan(pinned, row_filter)
    if not tasks:
        return empty_scan(con, pinned.label, fields, mapping), "empty"
    if is_computed(view):
        tasks = in_commit_order(pinned, tasks)
    path = read_path(pinned, tasks, fields)
    if path == "direct":
        return direct_scan(con, pinned.label, tasks, fields, mapping), path
    full = empty_scan(con, pinned.label, fields, mapping)
    resolved = view.resolve(full.arrow_schema) if not is_computed(view) else view
    needed = needed_columns(resolved, source, fields)
    return arrow_scan(con, pinned, tasks, row_filter, needed, mapping, full.arrow_schema), path
