"""The embedded offline store: Parquet files queried by DuckDB (``offline_store: {type: duckdb}``).

``type: file`` (Feast's name for its local store) selects the same backend. Semantics, SQL and
memory behaviour are described in docs/offline.md.

>>> store = DuckDBOfflineStore(config)           # config.offline_store is a DuckDBOfflineStoreConfig
>>> job = store.historical(entity_table, "event_timestamp", selections, full_feature_names=False)
>>> job.to_parquet("training.parquet")
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, FeatureView
from ladle.definitions.refs import ViewSelection, check_selections
from ladle.errors import EntityKeyError, RequestError
from ladle.offline import pit, pull
from ladle.offline.append import append_rows
from ladle.offline.base import AsOf
from ladle.offline.computed import computed_scan, is_computed
from ladle.offline.job import DuckDBRetrievalJob, translate_errors
from ladle.offline.sources import SourceScan, check_view, duck_type_of, open_scan
from ladle.types import DType, ValueType

if TYPE_CHECKING:
    import duckdb


class DuckDBOfflineStoreConfig(StrictModel):
    """``offline_store:`` block of the DuckDB (Parquet) offline store."""

    type: Literal["duckdb", "file"] = Field("duckdb", description="'duckdb' or Feast's 'file'; both select this store")
    memory_limit: str | None = Field(
        None, description="DuckDB memory limit, e.g. '1GB'; bigger joins spill to temp_directory. Default: DuckDB's"
    )
    threads: int | None = Field(None, gt=0, description="DuckDB worker threads; default: one per core")
    temp_directory: str | None = Field(
        None, description="where DuckDB spills when over memory_limit; default: <system temp>/ladle-duckdb-spill"
    )


def _micros(value: datetime) -> int:
    """UTC microseconds of a datetime (naive = UTC)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class DuckDBOfflineStore:
    """History in Parquet files (a file, a directory or a glob per source), joined by DuckDB."""

    config_class: ClassVar[type[StrictModel]] = DuckDBOfflineStoreConfig

    def __init__(self, config: RepoConfig) -> None:
        self.repo_config = config
        block = config.offline_store
        self.config = block if isinstance(block, DuckDBOfflineStoreConfig) else DuckDBOfflineStoreConfig()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the shared in-memory database, in UTC (one per query or job)."""
        import duckdb

        with self._lock:
            if self._con is None:
                settings: dict[str, str | bool | int | float | list[str]] = {}
                if self.config.threads:
                    settings["threads"] = self.config.threads
                if self.config.memory_limit:
                    settings["memory_limit"] = self.config.memory_limit
                # DuckDB's own default spills into ".tmp" under the working directory, i.e. the
                # user's repo; the system temp directory is the better default.
                settings["temp_directory"] = self.config.temp_directory or str(
                    Path(tempfile.gettempdir()) / "ladle-duckdb-spill"
                )
                self._con = duckdb.connect(":memory:", config=settings)
            cur = self._con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    def _scan(self, con: duckdb.DuckDBPyConnection, source: DataSource, allow_empty: bool = False) -> SourceScan:
        return open_scan(con, source, self.repo_config.repo_path, allow_empty=allow_empty)

    # -- protocol ---------------------------------------------------------------------------
    def source_schema(self, source: DataSource) -> pa.Schema:
        """The Arrow schema of a source's files (source column names); DataSourceError if unreadable."""
        con = self._cursor()
        try:
            return self._scan(con, source).arrow_schema
        finally:
            con.close()

    def pull_latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """The newest row per entity with ``start <= event_ts <= end``, in batches of at most ``batch_rows``."""
        return self._pull(view, start, end, batch_rows, latest=True)

    def pull_all(self, view: FeatureView, start: datetime, end: datetime) -> Iterator[pa.RecordBatch]:
        """Every row with ``start <= event_ts <= end``."""
        return self._pull(view, start, end, 100_000, latest=False)

    def _pull(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int, latest: bool
    ) -> Iterator[pa.RecordBatch]:
        if batch_rows <= 0:
            raise RequestError(f"batch_rows must be positive, got {batch_rows}")
        con = self._cursor()
        scan = self._scan(con, view.batch_source, allow_empty=True)
        if not scan.files:
            return iter(())
        if is_computed(view):
            scan, resolved = computed_scan(con, scan, view, _micros(start), _micros(end))
        else:
            resolved = check_view(scan, view)
        build = pull.latest_sql if latest else pull.all_sql
        sql = build(scan, resolved, _micros(start), _micros(end))
        with translate_errors(f"reading '{view.name}'"):
            reader = con.sql(sql).to_arrow_reader(batch_rows)
        return _batches(con, reader, view.name)

    def historical(
        self,
        entity_df: pa.Table,
        timestamp_column: str,
        selections: Sequence[ViewSelection],
        full_feature_names: bool,
        as_of: AsOf | None = None,
    ) -> DuckDBRetrievalJob:
        """Point-in-time join of ``entity_df`` with each selection (docs/offline.md).

        ``entity_df`` holds the join keys (under each selection's entity column names) and a
        timestamp column (any unit; naive = UTC) without nulls; extra columns pass through.
        Parquet files keep no snapshots: any ``as_of`` is a RequestError.
        """
        if as_of is not None:
            raise RequestError(
                "as_of needs an offline store that keeps snapshots (type: iceberg); "
                "the duckdb store reads Parquet files as they are now"
            )
        _check_entity_frame(entity_df, timestamp_column, selections, full_feature_names)
        con = self._cursor()
        entity, t_min, t_max = _prepare_entity(entity_df, timestamp_column)
        joins = [self._join(con, sel, entity_df.schema, full_feature_names, (t_min, t_max)) for sel in selections]
        con.register(pit.ENTITY, entity)
        sql = pit.build_sql(entity_df.column_names, joins, t_min, t_max)
        return DuckDBRetrievalJob(con, sql, entity)

    def _join(
        self,
        con: duckdb.DuckDBPyConnection,
        sel: ViewSelection,
        schema: pa.Schema,
        full_feature_names: bool,
        span: tuple[int, int],
    ) -> pit.ViewJoin:
        scan = self._scan(con, sel.view.batch_source)
        # Beyond ~146,000 years a ttl limits nothing, and the arithmetic must stay in BIGINT.
        ttl_us = min(sel.view.ttl // timedelta(microseconds=1), _MAX_TTL_US)
        if is_computed(sel.view):
            # the rows an entity row at t can match: (t - ttl, t], or all up to t without a ttl
            rows_from = span[0] - ttl_us if ttl_us else None
            scan, view = computed_scan(con, scan, sel.view, rows_from, span[1])
        else:
            view = check_view(scan, sel.view)
        entity_keys = sel.entity_columns()
        for key_field, column in zip(view.entity_columns, entity_keys, strict=True):
            arrow_type = schema.field(column).type
            if not _key_compatible(key_field.dtype, arrow_type):
                raise EntityKeyError(
                    f"entity frame column '{column}' is {arrow_type} but '{sel.view.name}' joins on "
                    f"'{key_field.name}' of type {key_field.dtype}"
                )
        key_types = tuple(_key_type(f.dtype) for f in view.entity_columns)
        casts = tuple(
            None if _arrow_duck_type(schema.field(k).type) == t else t
            for k, t in zip(entity_keys, key_types, strict=True)
        )
        return pit.ViewJoin(
            scan=scan,
            view=view,
            features=sel.features,
            outputs=tuple(sel.output_names(full_feature_names)),
            entity_keys=tuple(entity_keys),
            key_types=key_types,
            entity_casts=casts,
            ttl_us=ttl_us,
        )

    def append(self, source: DataSource, rows: pa.Table) -> int:
        """Add rows (source column names) as a new Parquet file; see :func:`ladle.offline.append.append_rows`."""
        con = self._cursor()
        try:
            return append_rows(con, source, self.repo_config.repo_path, rows)
        finally:
            con.close()

    def close(self) -> None:
        """Close the DuckDB database (jobs already created keep their own connection)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


_MAX_TTL_US = 2**62


def _batches(con: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader, name: str) -> Iterator[pa.RecordBatch]:
    # ``con`` is held so the connection outlives the reader.
    with translate_errors(f"reading '{name}'"):
        yield from reader
    del con


def _key_type(dtype: DType) -> str:
    """The DuckDB type join keys of this dtype are compared as (integers as BIGINT, so no cast can overflow)."""
    if dtype.value_type in (ValueType.INT32, ValueType.INT64):
        return "BIGINT"
    return duck_type_of(dtype)


def _key_compatible(dtype: DType, arrow_type: pa.DataType) -> bool:
    """Whether an entity column of ``arrow_type`` can hold keys of ``dtype`` (integers of any width, strings, bytes).

    Anything else (floats or booleans for an integer key, numbers for a string key) would be cast
    by DuckDB and match the wrong rows (1.2 -> 1, True -> 1, 1 -> '1').
    """
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if dtype.value_type in (ValueType.INT32, ValueType.INT64):
        return bool(pa.types.is_integer(arrow_type))
    if dtype.value_type == ValueType.STRING:
        checks = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
        return any(check(arrow_type) for check in checks)
    if dtype.value_type == ValueType.BYTES:
        return bool(pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type))
    return bool(dtype.arrow.equals(arrow_type))


def _arrow_duck_type(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_int64(arrow_type):
        return "BIGINT"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "VARCHAR"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "BLOB"
    return None


def _check_entity_frame(
    entity_df: pa.Table, timestamp_column: str, selections: Sequence[ViewSelection], full_feature_names: bool
) -> None:
    if entity_df.num_rows == 0:
        raise RequestError("the entity frame is empty: give at least one row of join keys and a timestamp")
    if not selections:
        raise RequestError("no features requested")
    check_selections(selections, full_feature_names)
    names = entity_df.column_names
    reserved = [n for n in names if n.startswith("__ladle_")]
    if reserved:
        raise RequestError(f"entity frame columns {reserved} use the reserved prefix '__ladle_'")
    if len(set(names)) != len(names):
        raise RequestError(f"the entity frame has duplicate column names: {names}")
    if timestamp_column not in names:
        raise RequestError(f"the entity frame has no timestamp column '{timestamp_column}'")
    for sel in selections:
        for key in sel.entity_columns():
            if key not in names:
                raise EntityKeyError(f"the entity frame has no column '{key}', a join key of '{sel.view.name}'")
        clash = sorted(set(sel.output_names(full_feature_names)) & set(names))
        if clash:
            raise RequestError(
                f"features {clash} of '{sel.prefix}' have the names of entity frame columns; "
                "rename those columns or pass full_feature_names=True"
            )


def _prepare_entity(entity_df: pa.Table, timestamp_column: str) -> tuple[pa.Table, int, int]:
    """The frame with its timestamp in UTC microseconds, a row number and the row time as int64."""
    column = entity_df.column(timestamp_column)
    if not pa.types.is_timestamp(column.type) and not pa.types.is_date(column.type):
        raise RequestError(f"entity frame column '{timestamp_column}' is {column.type}, not a timestamp")
    if column.null_count:
        raise RequestError(f"entity frame column '{timestamp_column}' has {column.null_count} null timestamps")
    utc = column.cast(pa.timestamp("us", tz="UTC"), safe=False)
    micros = utc.cast(pa.int64())
    bounds = pc.min_max(micros)
    table = entity_df.replace_schema_metadata(None).set_column(
        entity_df.column_names.index(timestamp_column), timestamp_column, utc
    )
    table = table.append_column(pit.ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    table = table.append_column(pit.TIME, micros)
    return table, int(bounds["min"].as_py()), int(bounds["max"].as_py())
