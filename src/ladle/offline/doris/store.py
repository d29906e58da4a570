"""The MySQL-protocol offline store: Apache Doris, StarRocks, MySQL/MariaDB (``type: doris|starrocks|mysql``).

Everything runs in the engine: the point-in-time join is one query over the sources and a work
table holding the entity frame's keys and times; materialization reads are one query each; results
are streamed back in batches (server-side cursor) into Arrow. Semantics are the DuckDB store's
(docs/offline.md); what differs per engine is in docs/offline.md, "MySQL-protocol stores".

>>> store = DorisOfflineStore(config)   # config.offline_store is a DorisOfflineStoreConfig
>>> store.historical(entity_table, "event_timestamp", selections, full_feature_names=False).to_df()
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, FeatureView
from ladle.definitions.refs import ViewSelection
from ladle.errors import DataSourceError, EntityKeyError, FeatureNotFoundError, RequestError
from ladle.offline.base import AsOf
from ladle.offline.computed import is_computed
from ladle.offline.doris import sql
from ladle.offline.doris.config import DorisOfflineStoreConfig, batch_of, doris_block, source_relation
from ladle.offline.doris.connection import close_quietly, connect, engine_version, has_asof_join, translated
from ladle.offline.doris.job import DorisRetrievalJob, Output, WorkTable
from ladle.offline.doris.load import insert_rows, key_column_types, table_columns
from ladle.offline.doris.values import UTC_US, schema_of, to_arrow
from ladle.offline.pit import ROW, TIME
from ladle.offline.session import check_entity_frame, prepare_entity
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP, DType, ValueType

if TYPE_CHECKING:
    import pymysql

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(value: datetime) -> int:
    """UTC microseconds of a datetime (naive = UTC)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)


class DorisOfflineStore:
    """History in Doris / StarRocks / MySQL tables, joined in the engine."""

    config_class: ClassVar[type[StrictModel]] = DorisOfflineStoreConfig

    def __init__(self, config: RepoConfig) -> None:
        self.repo_config = config
        self.config = doris_block(config)
        self._asof: bool | None = None
        self._lock = threading.Lock()

    # -- helpers ------------------------------------------------------------------------------
    def _source(self, source: DataSource) -> sql.Source:
        batch = batch_of(source)
        return sql.Source(
            source_relation(batch, self.config),
            {dst: src for src, dst in batch.field_mapping.items()},
            batch.timestamp_field,
            batch.created_timestamp_column,
        )

    def _resolve(self, view: FeatureView) -> FeatureView:
        if is_computed(view):
            raise DataSourceError(
                f"feature view '{view.name}' computes its rows from raw events (aggregations or a udf); "
                f"the {self.config.type} offline store reads stored rows only: materialize it from a duckdb "
                "or iceberg offline store, or store its computed rows in a table"
            )
        schema = self.source_schema(view.batch_source)
        # Array features are JSON text on the wire (JSON / ARRAY columns): read as the declared lists.
        mapping = {dst: src for src, dst in view.batch_source.field_mapping.items()}
        for f in view.features:
            column = mapping.get(f.name, f.name)
            if f.dtype.is_list and column in schema.names and pa.types.is_string(schema.field(column).type):
                schema = schema.set(schema.get_field_index(column), pa.field(column, f.dtype.arrow))
        return view.resolve(schema)

    # -- protocol ------------------------------------------------------------------------------
    def source_schema(self, source: DataSource) -> pa.Schema:
        """The Arrow schema of a source's table or query (source column names); DataSourceError if unreadable."""
        src = self._source(source)
        con = connect(self.config)
        try:
            with translated(self.config, f"reading the schema of {src.relation}"), con.cursor() as cur:
                cur.execute(sql.schema_sql(src, self.config.type))
                return schema_of(cur)
        finally:
            con.close()

    def pull_latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """The newest row per entity with ``start <= event_ts <= end``, in batches of at most ``batch_rows``."""
        return self._pull(view, start, end, batch_rows, latest=True)

    def pull_all(self, view: FeatureView, start: datetime, end: datetime) -> Iterator[pa.RecordBatch]:
        """Every row with ``start <= event_ts <= end``."""
        return self._pull(view, start, end, self.config.fetch_batch_rows, latest=False)

    def pull_sql(self, view: FeatureView, start: datetime, end: datetime, latest: bool = True) -> str:
        """The query ``pull_latest`` (or ``pull_all``) runs, in the store's dialect."""
        resolved = self._resolve(view)
        src = self._source(view.batch_source)
        build = sql.pull_latest_sql if latest else sql.pull_all_sql
        canonical = build(src, resolved.join_keys, resolved.feature_names, micros(start), micros(end))
        return sql.render(canonical, self.config.type, [src.relation.query] if src.relation.query else ())

    def _pull(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int, latest: bool
    ) -> Iterator[pa.RecordBatch]:
        if batch_rows <= 0:
            raise RequestError(f"batch_rows must be positive, got {batch_rows}")
        resolved = self._resolve(view)
        query = self.pull_sql(view, start, end, latest)
        dtypes: list[DType | None] = [
            *(f.dtype for f in resolved.entity_columns),
            *(f.dtype for f in resolved.features),
        ]
        dtypes += [None, None]
        names = [*resolved.join_keys, *resolved.feature_names, EVENT_TIMESTAMP, CREATED_TIMESTAMP]
        schema = pa.schema([pa.field(n, d.arrow if d else UTC_US) for n, d in zip(names, dtypes, strict=True)])
        return self._stream(query, schema, dtypes, batch_rows, f"reading '{view.name}'")

    def _stream(
        self, query: str, schema: pa.Schema, dtypes: list[DType | None], batch_rows: int, what: str
    ) -> Iterator[pa.RecordBatch]:
        import pymysql.cursors

        con = connect(self.config)
        try:
            with translated(self.config, what):
                cur = con.cursor(pymysql.cursors.SSCursor)
                cur.execute(query)
                while rows := cur.fetchmany(batch_rows):
                    columns = list(zip(*rows, strict=True))
                    arrays = [to_arrow(c, d, f.type) for c, d, f in zip(columns, dtypes, schema, strict=True)]
                    yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        finally:
            close_quietly(con)  # also when the caller stops early: the server drops the rest

    def historical(
        self,
        entity_df: pa.Table,
        timestamp_column: str,
        selections: Sequence[ViewSelection],
        full_feature_names: bool,
        as_of: AsOf | None = None,
    ) -> DorisRetrievalJob:
        """Point-in-time join of ``entity_df`` with each selection (docs/offline.md), run in the engine."""
        if as_of is not None:
            raise RequestError(
                "as_of needs an offline store that keeps snapshots (type: iceberg); "
                f"the {self.config.type} store reads its tables as they are now"
            )
        check_entity_frame(entity_df, timestamp_column, selections, full_feature_names)
        prepared, t_min, t_max = prepare_entity(entity_df, timestamp_column)
        slots: dict[str, int] = {}  # entity column → work-table key slot
        key_types: dict[int, str] = {}
        joins: list[sql.ViewJoin] = []
        outputs: list[Output] = []
        for sel in selections:
            view = self._resolve(sel.view)
            missing = [f for f in sel.features if f not in view.feature_names]
            if missing:
                raise FeatureNotFoundError(missing[0], detail=f"feature view '{view.name}' has no such feature")
            src = self._source(sel.view.batch_source)
            columns = sel.entity_columns()
            for key_field, column in zip(view.entity_columns, columns, strict=True):
                _check_key(entity_df.schema.field(column).type, key_field.dtype, column, view.name, key_field.name)
            types = key_column_types(self.config, src, view)
            for column, key in zip(columns, view.join_keys, strict=True):
                key_types.setdefault(slots.setdefault(column, len(slots)), types[key])
            ttl_us = sel.view.ttl // timedelta(microseconds=1)
            joins.append(
                sql.ViewJoin(
                    source=src,
                    keys=tuple(view.join_keys),
                    slots=tuple(slots[c] for c in columns),
                    features=tuple(sel.features),
                    has_ttl=ttl_us > 0,
                    span=(t_min - ttl_us if ttl_us > 0 else sql.MIN_US, t_max),
                )
            )
            dtypes = {f.name: f.dtype for f in view.features}
            names = sel.output_names(full_feature_names)
            outputs += [Output(o, dtypes[f]) for o, f in zip(names, sel.features, strict=True)]
        work = _work_table(prepared, slots, key_types, selections)
        entity = prepared.select(entity_df.column_names)
        return DorisRetrievalJob(self.config, entity, work, joins, outputs, self._strategy)

    def _strategy(self, con: pymysql.Connection[Any]) -> str:
        block = self.config
        if block.asof_join != "off":
            with self._lock:
                if self._asof is None:
                    self._asof = block.asof_join == "on" or has_asof_join(block.type, engine_version(con, block.type))
            if self._asof:
                return "asof"
        if block.pit_strategy != "auto":
            return block.pit_strategy
        return "lookup" if block.type == "mysql" else "window"

    def append(self, source: DataSource, rows: pa.Table) -> int:
        """Insert rows (source column names) into the source's table; returns the number inserted."""
        src = self._source(source)
        return insert_rows(self.config, src, rows, replace=None)

    def erase_rows(self, source: DataSource, keys: Mapping[str, object], dry_run: bool = False) -> int:
        """DELETE the rows matching ``keys`` from the source's table (:class:`~ladle.offline.base.RowEraser`)."""
        from ladle.offline.doris.load import erase_rows

        return erase_rows(self.config, self._source(source), keys, dry_run)

    def replace_window(self, source: DataSource, rows: pa.Table, start: datetime, end: datetime) -> int:
        """Replace the rows with ``start <= event_ts < end`` by ``rows`` (one transaction on MySQL/MariaDB).

        On Doris and StarRocks the DELETE and the INSERT are two commits (docs/offline.md).
        """
        src = self._source(source)
        return insert_rows(self.config, src, rows, replace=(micros(start), micros(end)))

    def table_columns(self, source: DataSource) -> dict[str, str]:
        """The source table's columns and their server types (for diagnostics and tests)."""
        return table_columns(self.config, self._source(source))

    def close(self) -> None:
        """Nothing to close: every call opens and closes its own connection."""


def _check_key(arrow_type: pa.DataType, dtype: DType, column: str, view: str, key: str) -> None:
    """An entity column must hold the key's kind: integers (any width), strings or bytes; anything
    else would be converted by the server and match the wrong rows (1.2 → 1, True → 1, 1 → '1')."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if dtype.value_type in (ValueType.INT32, ValueType.INT64):
        ok = pa.types.is_integer(arrow_type)
    elif dtype.value_type == ValueType.STRING:
        ok = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    elif dtype.value_type == ValueType.BYTES:
        ok = pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)
    else:
        ok = dtype.arrow.equals(arrow_type)
    if not ok:
        raise EntityKeyError(
            f"entity frame column '{column}' is {arrow_type} but '{view}' joins on '{key}' of type {dtype}"
        )


def _work_table(
    prepared: pa.Table, slots: dict[str, int], key_types: dict[int, str], selections: Sequence[ViewSelection]
) -> WorkTable:
    """Row number, key slots, row time (DATETIME(6), UTC) and one lower bound per view with a ttl."""
    columns: list[tuple[str, str]] = [(sql.ROW, "BIGINT NOT NULL")]
    arrays: list[pa.Array | pa.ChunkedArray] = [prepared.column(ROW)]
    for column, slot in slots.items():
        values = prepared.column(column)
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if pa.types.is_integer(values.type):
            values = values.cast(pa.int64())
        columns.append((sql.key_slot(slot), key_types[slot]))
        arrays.append(values)
    row_us = prepared.column(TIME)
    columns.append((sql.TIME, "TIMESTAMP(6) NOT NULL"))
    arrays.append(row_us.cast(pa.timestamp("us")))
    for n, sel in enumerate(selections):
        ttl_us = min(sel.view.ttl // timedelta(microseconds=1), 2**62)
        if ttl_us > 0:
            low = pc.max_element_wise(pc.subtract(row_us, ttl_us), sql.MIN_US)
            columns.append((sql.low_slot(n), "TIMESTAMP(6)"))
            arrays.append(low.cast(pa.timestamp("us")))
    return WorkTable(tuple(columns), pa.table(arrays, names=[c for c, _ in columns]))
