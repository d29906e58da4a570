"""A stream feature view computed over its whole history in DuckDB: rules 3 to 8 of the semantics.

>>> rows = compute(price_stream, events)   # events: the batch source's rows, as Arrow

The stages, each over the whole input (no per-row Python):

1. **Valid rows**: rows with a NULL join key, event time or (declared) created time are dropped
   (the stream dead-letters them).
2. **udf** (rule 3), pandas: every remaining event (duplicates included) without the ``_kafka_*``
   columns, event time as ``datetime64`` in UTC. Its output rows are matched back to their events
   by position (``frames.run_udf``), which carries the created time, ``_kafka_offset``,
   ``_kafka_partition`` and input position through for the next stage.
3. **Dedup** (rule 4), SQL, over the udf's surviving rows: of the rows of one identity ``(K, t)``
   the one with the greatest created time wins, then the greatest ``_kafka_offset`` (then
   ``_kafka_partition``; a row without one loses), then the row that comes last in the input.
4. **Windows** (rules 5 and 6), SQL window functions over event time in epoch microseconds.
   A continuous window ``(t - w, t]`` is ``RANGE BETWEEN w - 1 PRECEDING AND CURRENT ROW``. For
   hopping windows the window ends are generated first (each bucket ``(e - s, e]`` holding an event
   opens the ``w_max / s`` ends from ``e`` on) and placed among the events as rows without values,
   so the same frames give each end its aggregates; only the end rows are kept.
5. **derive** (rule 7), pandas: on the aggregate columns of the output rows.

Without aggregations (rule 8) the output rows are the winning events (after the udf).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.aggregation import frames
from ladle.definitions import StreamFeatureView
from ladle.definitions.stream_feature_view import KAFKA_COLUMNS
from ladle.errors import DataSourceError, DefinitionError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

KAFKA_PARTITION, KAFKA_OFFSET = KAFKA_COLUMNS

_US = pa.timestamp("us", tz="UTC")
_T = "__ladle_t"  # event time, epoch microseconds (BIGINT)
_C = "__ladle_c"  # created time, epoch microseconds
_POS = "__ladle_pos"  # row position in the input: the last tie-break
_END = "__ladle_end"  # 1 on a hopping window's end row
_MICRO = timedelta(microseconds=1)
_names = itertools.count()


def compute(view: StreamFeatureView, events: pa.Table, *, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """The output rows of ``view`` over raw ``events`` (rules 3 to 8 of docs/streaming.md).

    ``events`` has the batch source's columns under the view's names (after ``field_mapping``),
    timestamps as Arrow timestamps (naive = UTC), and optionally ``_kafka_partition`` and
    ``_kafka_offset`` (ints) for rule 4's last tie-break. The transforms must be bound
    (:meth:`StreamFeatureView.bind`) when the view has any.

    Returns one row per output identity, ordered by join keys then time: the join keys, the event
    time under the source's ``timestamp_field`` (timestamp[us, UTC]), then ``view.feature_names``
    with the dtypes of ``view.features``.
    """
    import duckdb

    _check_input(view, events)
    own = con is None
    cur = duckdb.connect() if con is None else con
    try:
        valid = _valid(view, _prepared(view, events))
        if view.udf is not None:
            valid = _run_udf(view, valid)
        with _registered(cur, valid) as name:
            winners = _dedup(cur, view, valid.column_names, name)
        if not view.aggregations:
            return _finish(view, winners, winners)
        with _registered(cur, _values(view, winners)) as name:
            rows = _aggregate(cur, view, name)
        return _finish(view, rows, _run_derive(view, rows) if view.derive is not None else rows)
    finally:
        if own:
            cur.close()


def output_schema(view: StreamFeatureView) -> pa.Schema:
    """The Arrow schema of :func:`compute`'s result (join keys typed when the view is resolved)."""
    dtypes = {f.name: f.dtype.arrow for f in view.entity_columns}
    fields = [pa.field(k, dtypes.get(k, pa.null())) for k in view.join_keys]
    fields.append(pa.field(view.batch_source.timestamp_field, _US))
    fields += [pa.field(f.name, f.dtype.arrow) for f in view.features]
    return pa.schema(fields)


# -- input ---------------------------------------------------------------------------------------


def _check_input(view: StreamFeatureView, events: pa.Table) -> None:
    src = view.batch_source
    required = [
        *view.join_keys,
        src.timestamp_field,
        *([src.created_timestamp_column] * bool(src.created_timestamp_column)),
    ]
    missing = [c for c in required if c not in events.column_names]
    if missing:
        raise DataSourceError(f"stream feature view '{view.name}': the events have no columns {missing}")
    for column in (src.timestamp_field, src.created_timestamp_column):
        if column and not pa.types.is_timestamp(events.schema.field(column).type):
            raise DataSourceError(
                f"stream feature view '{view.name}': column '{column}' is {events.schema.field(column).type}, "
                "not a timestamp"
            )


def _micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A timestamp column as int64 microseconds since the epoch (naive = UTC)."""
    unit = column.type.unit
    as_us = column if unit == "us" else column.cast(pa.timestamp("us", tz=column.type.tz), safe=False)
    return as_us.cast(pa.int64())


def _prepared(view: StreamFeatureView, events: pa.Table) -> pa.Table:
    """The events with epoch-microsecond time columns and their row position."""
    src = view.batch_source
    table = events.replace_schema_metadata(None)
    t = table.column(src.timestamp_field)
    table = table.set_column(table.column_names.index(src.timestamp_field), src.timestamp_field, _as_utc(t))
    table = table.append_column(_T, _micros(t))
    if src.created_timestamp_column:
        c = table.column(src.created_timestamp_column)
        index = table.column_names.index(src.created_timestamp_column)
        table = table.set_column(index, src.created_timestamp_column, _as_utc(c))
        table = table.append_column(_C, _micros(c))
    return table.append_column(_POS, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _as_utc(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if column.type.equals(_US) else column.cast(_US, safe=False)


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
    name = f"__ladle_batch_{next(_names)}"
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- stage 1: valid rows ------------------------------------------------------------------------


def _valid(view: StreamFeatureView, table: pa.Table) -> pa.Table:
    """The rows the stream would accept: join keys, event time and (declared) created time present."""
    needed = [*view.join_keys, _T, *([_C] if view.batch_source.created_timestamp_column else [])]
    if not any(table.column(c).null_count for c in needed):
        return table
    mask = table.column(needed[0]).is_valid()
    for c in needed[1:]:
        mask = pc.and_(mask, table.column(c).is_valid())
    return table.filter(mask)


# -- stage 2: udf -------------------------------------------------------------------------------


_INTERNAL = (_T, _C, _POS)


def _run_udf(view: StreamFeatureView, events: pa.Table) -> pa.Table:
    """The udf's output rows, each with its event's time, created time, Kafka columns and position."""
    assert view.udf is not None
    src = view.batch_source
    hidden = [c for c in events.column_names if c in KAFKA_COLUMNS or c in _INTERNAL]
    t = np.asarray(events.column(_T).to_numpy(), dtype=np.int64)
    positions, out = frames.run_udf(view, events.drop_columns(hidden), t, src.timestamp_field)
    what = f"stream feature view '{view.name}': udf {view.udf.qualname}"
    _check_frame(what, out, [*view.join_keys, src.timestamp_field])
    table = _from_pandas(what, out.drop(columns=[c for c in out.columns if c in hidden]))
    ts = table.column(src.timestamp_field)
    if not pa.types.is_timestamp(ts.type):
        raise DefinitionError(f"{what} made '{src.timestamp_field}' a {ts.type}; it must keep the event time")
    table = table.set_column(table.column_names.index(src.timestamp_field), src.timestamp_field, _as_utc(ts))
    carried = events.select(hidden).take(pa.array(positions, pa.int64()))
    for name in hidden:
        table = table.append_column(name, carried.column(name))
    return table


# -- stage 3: dedup -----------------------------------------------------------------------------


def _dedup(con: duckdb.DuckDBPyConnection, view: StreamFeatureView, columns: list[str], table: str) -> pa.Table:
    src = view.batch_source
    keys = [_q(k) for k in view.join_keys]
    order = []
    if src.created_timestamp_column:
        order.append(f"{_C} DESC")
    order += [f"{_q(c)} DESC NULLS LAST" for c in (KAFKA_OFFSET, KAFKA_PARTITION) if c in columns]
    order.append(f"{_POS} DESC")
    kept = [c for c in columns if c not in KAFKA_COLUMNS and c not in _INTERNAL]
    select = ", ".join([*(_q(c) for c in kept), _T])
    sql = (
        f"SELECT {select} FROM {table}\n"
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join([*keys, _T])} ORDER BY {', '.join(order)}) = 1\n"
        f"ORDER BY {', '.join([*keys, _T])}"
    )
    return con.sql(sql).to_arrow_table()


def _check_frame(what: str, frame: object, required: list[str]) -> None:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DefinitionError(f"{what} returned {type(frame).__name__}, not a pandas DataFrame")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DefinitionError(f"{what} dropped the columns {missing}; it must keep them")


def _from_pandas(what: str, frame: pd.DataFrame) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise DefinitionError(f"{what} returned a frame Arrow cannot read: {exc}") from exc


# -- stage 4: windows ---------------------------------------------------------------------------


def _value_columns(view: StreamFeatureView) -> list[str]:
    return list(dict.fromkeys(a.column for a in view.aggregations))


def _only_counted(view: StreamFeatureView, column: str) -> bool:
    return all(a.function == "count" for a in view.aggregations if a.column == column)


def _values(view: StreamFeatureView, events: pa.Table) -> pa.Table:
    """Join keys, time and the aggregated columns (as float64, NaN read as missing)."""
    columns = [*view.join_keys, _T]
    out = events.select(columns)
    for i, name in enumerate(_value_columns(view)):
        if name not in events.column_names:
            raise DefinitionError(f"stream feature view '{view.name}': aggregated column '{name}' is not in the events")
        column = events.column(name)
        numeric = (
            pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
            or pa.types.is_boolean(column.type)
            or pa.types.is_null(column.type)
        )
        if not numeric and _only_counted(view, name):  # any type may be counted: its presence
            column = pc.if_else(pc.is_valid(column), pa.scalar(1.0), pa.scalar(None, pa.float64()))
        elif not numeric:
            raise DefinitionError(
                f"stream feature view '{view.name}': aggregated column '{name}' is {column.type}, not a number"
            )
        as_float = column.cast(pa.float64())
        as_float = pc.if_else(pc.is_nan(as_float), pa.scalar(None, pa.float64()), as_float)
        out = out.append_column(f"__ladle_v{i}", as_float)
    return out


_SQL_FUNCTIONS = {
    "count": "count({v})",
    "sum": "sum({v})",
    "mean": "avg({v})",
    "min": "min({v})",
    "max": "max({v})",
    "stddev": "stddev_samp({v})",
    "first": "first_value({v} IGNORE NULLS)",
    "last": "last_value({v} IGNORE NULLS)",
}


def _aggregate(con: duckdb.DuckDBPyConnection, view: StreamFeatureView, table: str) -> pa.Table:
    keys = [_q(k) for k in view.join_keys]
    partition = f"PARTITION BY {', '.join(keys)} " if keys else ""
    value_of = {c: f"__ladle_v{i}" for i, c in enumerate(_value_columns(view))}
    windows: dict[int, str] = {}
    selects = []
    for agg in view.aggregations:
        w_us = agg.window // _MICRO
        win = windows.setdefault(w_us, f"__w{len(windows)}")
        expr = _SQL_FUNCTIONS[agg.function].format(v=value_of[agg.column])
        selects.append(f"{expr} OVER {win} AS {_q(agg.name)}")
    frames = ", ".join(
        f"{name} AS ({partition}ORDER BY {_T} RANGE BETWEEN {w_us - 1} PRECEDING AND CURRENT ROW)"
        for w_us, name in windows.items()
    )
    head = ", ".join([*keys, _T])
    if view.slide_interval is None:
        sql = f"SELECT {head}, {', '.join(selects)} FROM {table} WINDOW {frames}"
    else:  # the events and the window ends share the frames; only the ends are output rows
        rows = f"SELECT {head}, {_END}, {', '.join(selects)} FROM {_with_ends(view, table)} WINDOW {frames}"
        sql = f"SELECT * EXCLUDE ({_END}) FROM ({rows}) WHERE {_END} = 1"
    return con.sql(f"{sql} ORDER BY {head}").to_arrow_table()


def _with_ends(view: StreamFeatureView, table: str) -> str:
    """The events and the hopping windows' end rows (no values), as a subquery.

    An event in slide bucket ``b`` (``(b - 1) s < t <= b s``) opens the ends ``b .. b + m - 1``
    (times ``s``, ``m = w_max / s``). Expanding every bucket and deduplicating costs ``m`` rows per
    bucket; instead the buckets of a key are merged into islands (a bucket within ``m`` of the
    previous one continues its island) and each island gives its ends once.
    """
    assert view.slide_interval is not None
    s = view.slide_interval // _MICRO
    m = view.max_window // view.slide_interval
    keys = [_q(k) for k in view.join_keys]
    key_list = "".join(f"{k}, " for k in keys)
    by_key = f"PARTITION BY {', '.join(keys)} " if keys else ""
    # ceil(t / s) in integers (DuckDB's // truncates toward zero)
    bucket = f"CASE WHEN {_T} >= 0 THEN ({_T} + {s - 1}) // {s} ELSE -((-{_T}) // {s}) END"
    buckets = f"SELECT DISTINCT {key_list}{bucket} AS __b FROM {table}"
    starts = (
        f"SELECT {key_list}__b, CASE WHEN __b - lag(__b) OVER ({by_key}ORDER BY __b) <= {m} THEN 0 ELSE 1 END AS __new "
        f"FROM ({buckets})"
    )
    islands = (
        f"SELECT {key_list}__b, sum(__new) OVER ({by_key}ORDER BY __b ROWS UNBOUNDED PRECEDING) AS __i FROM ({starts})"
    )
    spans = f"SELECT {key_list}min(__b) AS __lo, max(__b) + {m} AS __hi FROM ({islands}) GROUP BY {key_list}__i"
    ends = f"SELECT {key_list}unnest(range(__lo, __hi)) * {s} AS {_T} FROM ({spans})"
    return f"(SELECT *, 0 AS {_END} FROM {table} UNION ALL BY NAME SELECT *, 1 AS {_END} FROM ({ends}))"


# -- stage 5: derive and the output -------------------------------------------------------------


def _run_derive(view: StreamFeatureView, rows: pa.Table) -> pa.Table:
    assert view.derive is not None
    frame = rows.select([a.name for a in view.aggregations]).to_pandas()
    out = view.derive(frame)
    what = f"stream feature view '{view.name}': derive {view.derive.qualname}"
    _check_frame(what, out, view.feature_names)
    if len(out) != len(frame):
        raise DefinitionError(f"{what} returned {len(out)} rows for {len(frame)}; derive is row-level")
    return _from_pandas(what, out.reset_index(drop=True)[view.feature_names])


def _finish(view: StreamFeatureView, rows: pa.Table, features: pa.Table) -> pa.Table:
    """Keys and time from ``rows``, features from ``features`` (same rows), as :func:`output_schema`."""
    schema = output_schema(view)
    missing = [f for f in view.feature_names if f not in features.column_names]
    if missing:
        raise DefinitionError(
            f"stream feature view '{view.name}': features {missing} are not columns of the "
            f"{'udf output' if view.udf is not None else 'events'}"
        )
    columns: list[pa.ChunkedArray | pa.Array] = []
    for k in view.join_keys:
        column = rows.column(k)
        target = schema.field(k).type
        columns.append(column if pa.types.is_null(target) else _cast(view, k, column, target))
    columns.append(rows.column(_T).cast(_US))
    for f in view.features:
        columns.append(_cast(view, f.name, features.column(f.name), f.dtype.arrow))
    names = [*view.join_keys, view.batch_source.timestamp_field, *view.feature_names]
    return pa.table(columns, names=names)


def _cast(view: StreamFeatureView, name: str, column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if column.type.equals(target):
        return column
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DefinitionError(
            f"stream feature view '{view.name}': column '{name}' is {column.type} and cannot be read as {target}: {exc}"
        ) from exc
