"""Where a ``FileSource``'s rows are, and how its columns read in DuckDB SQL.

A ``FileSource.path`` (relative paths are relative to the feature repo) is one of:

* a Parquet **file**;
* a **directory**: every ``*.parquet`` file below it, recursively (partition directories such as
  ``month=2024-01/`` are only layout: hive partition columns are not added);
* a **glob** (``data/ticks/*.parquet``, ``data/**/*.parquet``).

Files whose name (or a parent directory's name below the root) starts with ``.`` or ``_`` are
skipped, so in-progress appends (hidden temp files) and ``_SUCCESS`` markers are never read.
The file list is expanded once per query: a query sees a consistent set of files.

Column names: a view sees the source through ``field_mapping`` (source column → view name); this
module maps view names back to source columns. Timestamps are read as UTC instants whatever their
Parquet encoding: naive values are taken as UTC, tz-aware ones converted, any unit (compared at
microsecond precision).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from ladle.definitions import DataSource, FeatureView, FileSource, PushSource
from ladle.errors import DataSourceError
from ladle.types import DType

if TYPE_CHECKING:
    import duckdb

_GLOB_CHARS = frozenset("*?[")
#: The row-number column of a registered relation (see :attr:`SourceScan.row_id`).
ROW_ID = "__ladle_rid"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: DuckDB types of timestamp columns, by how they are read as UTC instants.
_TZ_TYPES = frozenset({"TIMESTAMP WITH TIME ZONE"})
_NAIVE_TYPES = frozenset({"TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "DATE"})


def quote(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def iso_utc(micros: int) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC) of a microsecond epoch timestamp."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%d %H:%M:%S.%f")


def file_source(source: DataSource) -> FileSource:
    """The Parquet source behind ``source`` (a push source's batch source), or DataSourceError."""
    batch = source.batch_source if isinstance(source, PushSource) else source
    if not isinstance(batch, FileSource):
        raise DataSourceError(
            f"source {batch.name or batch!r} is a {type(batch).__name__}; "
            "the duckdb offline store reads FileSource only"
        )
    return batch


def _visible(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = (path.name,)
    return not any(p.startswith((".", "_")) for p in parts)


@dataclass(frozen=True)
class SourceLocation:
    """A FileSource's path made absolute, and what kind of path it is."""

    path: Path
    kind: str  # "file" | "directory" | "glob"

    @classmethod
    def of(cls, source: FileSource, repo_path: Path) -> SourceLocation:
        """Resolve ``source.path`` against the repo directory."""
        raw = source.path.removeprefix("file://")
        if "://" in raw:
            raise DataSourceError(f"file source {source.name or raw!r}: remote paths ({raw}) are not supported")
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else repo_path / path
        if _GLOB_CHARS & set(raw):
            return cls(path, "glob")
        if path.is_dir() or raw.endswith(("/", os.sep)):
            return cls(path, "directory")
        return cls(path, "file")

    @property
    def root(self) -> Path:
        """The directory new files are appended to."""
        if self.kind == "directory":
            return self.path
        if self.kind == "glob":
            parts = self.path.parts
            first_wild = next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))
            return Path(*parts[:first_wild])
        return self.path.parent

    def files(self) -> list[str]:
        """Every visible Parquet file, sorted; DataSourceError if the path does not exist."""
        if self.kind == "file":
            if not self.path.is_file():
                raise DataSourceError(f"source file {self.path} does not exist")
            return [str(self.path)]
        if self.kind == "directory":
            if not self.path.is_dir():
                raise DataSourceError(f"source directory {self.path} does not exist")
            found = (p for p in self.path.rglob("*.parquet") if p.is_file())
        else:
            found = (Path(p) for p in glob.glob(str(self.path), recursive=True) if os.path.isfile(p))
        return sorted(str(p) for p in found if _visible(p, self.root))


@dataclass(frozen=True)
class SourceScan:
    """One source, ready to be read in SQL: its files, column types and the view's names for them."""

    name: str
    files: tuple[str, ...]
    duck_types: dict[str, str]
    arrow_schema: pa.Schema
    mapping: dict[str, str] = field(default_factory=dict)  # view name → source column
    #: a relation registered in the connection to read instead of the files (computed rows)
    table: str = ""
    #: more ``read_parquet`` options, e.g. an Iceberg table's field-id ``schema`` map
    read_options: str = ""

    @property
    def relation(self) -> str:
        """The table expression: ``read_parquet(...)`` over the files, or the registered relation."""
        if self.table:
            return quote(self.table)
        files = ", ".join(literal(f) for f in self.files)
        if self.read_options:
            return f"read_parquet([{files}], hive_partitioning = false, {self.read_options})"
        union = ", union_by_name = true" if len(self.files) > 1 else ""
        return f"read_parquet([{files}], hive_partitioning = false{union})"

    @property
    def row_id(self) -> str:
        """A row's identity across two scans of the relation (the fixed file list, or the table's row number)."""
        return ROW_ID if self.table else "((file_index::BIGINT << 40) | file_row_number)"

    def column(self, view_name: str) -> str:
        """The source column holding the view's column ``view_name``."""
        return self.mapping.get(view_name, view_name)

    def duck_type(self, view_name: str) -> str:
        """DuckDB type of a view column in this source."""
        return self.duck_types[self.column(view_name)]

    def ref(self, view_name: str) -> str:
        """SQL reference to a view column."""
        return quote(self.column(view_name))

    def utc(self, view_name: str) -> str:
        """SQL expression of a timestamp column as TIMESTAMPTZ (session time zone is UTC)."""
        col, kind = self.ref(view_name), self.duck_type(view_name)
        if kind in _TZ_TYPES:
            return col
        if kind == "TIMESTAMPTZ_NS":
            return f"CAST({col} AS TIMESTAMPTZ)"
        if kind in _NAIVE_TYPES:
            return f"CAST(CAST({col} AS TIMESTAMP) AS TIMESTAMPTZ)"
        raise DataSourceError(f"source {self.name!r}: column {self.column(view_name)!r} is {kind}, not a timestamp")

    def epoch_us(self, view_name: str) -> str:
        """SQL expression of a timestamp column as microseconds since the epoch (UTC)."""
        col, kind = self.ref(view_name), self.duck_type(view_name)
        if kind in _TZ_TYPES or kind in {"TIMESTAMP", "TIMESTAMP_NS", "DATE"}:
            return f"epoch_us({col})"
        return f"epoch_us({self.utc(view_name)})"

    def bound(self, view_name: str, op: str, micros: int) -> str:
        """A pre-filter ``column op instant`` on the raw column, so Parquet statistics can skip row groups."""
        col, kind = self.ref(view_name), self.duck_type(view_name)
        stamp = iso_utc(micros)
        if kind in _TZ_TYPES or kind == "TIMESTAMPTZ_NS":
            return f"{col} {op} TIMESTAMPTZ {literal(stamp + '+00')}"
        if kind == "DATE":
            return f"{self.epoch_us(view_name)} {op} {micros}"
        return f"{col} {op} TIMESTAMP {literal(stamp)}"

    def cast(self, view_name: str, dtype: DType) -> str:
        """The column as the view declares it (a CAST only when the stored type differs).

        ``Map``, ``Json`` and ``Struct`` features are JSON text: a STRUCT / MAP / LIST column is
        turned into its JSON with DuckDB's ``to_json``; a VARCHAR column is taken as JSON already.
        """
        if dtype.is_document and self.duck_type(view_name) != "VARCHAR":
            return f"CAST(to_json({self.ref(view_name)}) AS VARCHAR)"
        return self.cast_sql(view_name, duck_type_of(dtype))

    def cast_sql(self, view_name: str, target: str) -> str:
        """The column as DuckDB type ``target`` (timestamps as UTC instants)."""
        ref = self.ref(view_name)
        if target == "TIMESTAMPTZ":
            return self.utc(view_name)
        return ref if self.duck_type(view_name) == target else f"CAST({ref} AS {target})"


_DUCK: dict[str, str] = {
    "Bytes": "BLOB",
    "String": "VARCHAR",
    "Int32": "INTEGER",
    "Int64": "BIGINT",
    "Float64": "DOUBLE",
    "Float32": "FLOAT",
    "Bool": "BOOLEAN",
    "UnixTimestamp": "TIMESTAMPTZ",
}


def _duck_name(dtype: DType) -> str:
    return "VARCHAR" if dtype.is_document else _DUCK[dtype.name]


def duck_type_of(dtype: DType) -> str:
    """The DuckDB type that stores a Ladle dtype."""
    if dtype.element is not None:
        return f"{_DUCK[dtype.element.name]}[]"
    return _duck_name(dtype)


def open_scan(
    con: duckdb.DuckDBPyConnection, source: DataSource, repo_path: Path, *, allow_empty: bool = False
) -> SourceScan:
    """List the source's files and read their schema (footers only).

    Raises DataSourceError when the path does not exist, holds no Parquet file (unless
    ``allow_empty``, which gives a scan with no files), or cannot be read.
    """
    import duckdb

    batch = file_source(source)
    location = SourceLocation.of(batch, repo_path)
    files = location.files()
    mapping = {dst: src for src, dst in batch.field_mapping.items()}
    label = batch.name or batch.path
    if not files:
        if allow_empty:
            return SourceScan(label, (), {}, pa.schema([]), mapping)
        raise DataSourceError(f"source {label!r}: no Parquet files at {location.path}")
    scan = SourceScan(label, tuple(files), {}, pa.schema([]), mapping)
    try:
        rel = con.sql(f"SELECT * FROM {scan.relation} LIMIT 0")
        types = {name: str(t) for name, t in zip(rel.columns, rel.types, strict=True)}
        schema = rel.to_arrow_table().schema
    except duckdb.Error as exc:
        raise DataSourceError(f"source {label!r}: cannot read Parquet at {location.path}: {exc}") from exc
    return SourceScan(label, tuple(files), types, schema, mapping)


def check_view(scan: SourceScan, view: FeatureView) -> FeatureView:
    """The view resolved against the scanned schema (DataSourceError on missing or mistyped columns)."""
    return view.resolve(scan.arrow_schema)
