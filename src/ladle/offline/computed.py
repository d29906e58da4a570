"""Stream feature views with aggregations or a udf, read offline: their rows are computed, not stored.

The batch source holds raw events. For a read that needs the view's rows with event times in
``[rows_from, rows_to]``, the events in ``[rows_from - max_window, rows_to]`` are read (every window
of a row in range starts after ``rows_from - max_window``; a hopping row at ``e`` covers
``(e - w, e]`` too), :func:`ladle.aggregation.batch.compute` runs over them, and the rows in range
are registered in the query's DuckDB connection. The point-in-time join and the pulls then scan
that relation instead of the Parquet files, with their usual SQL: ttl, ``full_feature_names``
and materialization watermarks work unchanged.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import TYPE_CHECKING, TypeGuard

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import FeatureView, StreamFeatureView
from ladle.definitions.stream_feature_view import KAFKA_COLUMNS
from ladle.offline.job import translate_errors
from ladle.offline.sources import ROW_ID, SourceScan, quote

if TYPE_CHECKING:
    import duckdb

_US = pa.timestamp("us", tz="UTC")
_names = itertools.count()


def is_computed(view: FeatureView) -> TypeGuard[StreamFeatureView]:
    """True when the view's offline rows must be computed from raw events."""
    return isinstance(view, StreamFeatureView) and view.is_computed


def events_sql(raw: SourceScan, view: FeatureView, from_us: int | None, to_us: int, where: str | None = None) -> str:
    """The raw events in ``[from, to]`` (``from`` None: all up to ``to``) that meet ``where`` (a condition
    on the raw columns, e.g. an entity-hash range), under the view's names."""
    src = view.batch_source
    times = {src.timestamp_field, src.created_timestamp_column} - {""}
    needed = None  # with a udf every column may matter; without, only what the windows read
    if isinstance(view, StreamFeatureView) and view.udf is None:
        needed = {*view.join_keys, *times, *KAFKA_COLUMNS, *(a.column for a in view.aggregations)}
    cols = []
    for column in raw.duck_types:
        name = src.field_mapping.get(column, column)
        if needed is not None and name not in needed:
            continue
        cols.append(f"{raw.utc(name) if name in times else quote(column)} AS {quote(name)}")
    ts = src.timestamp_field
    where_ = [raw.bound(ts, "<=", to_us + 1_000), f"{raw.epoch_us(ts)} <= {to_us}"]
    if from_us is not None:
        where_ += [raw.bound(ts, ">=", from_us - 1_000), f"{raw.epoch_us(ts)} >= {from_us}"]
    if where:
        where_.append(f"({where})")
    return f"SELECT {', '.join(cols)} FROM {raw.relation} WHERE {' AND '.join(where_)}"


def computed_scan(
    con: duckdb.DuckDBPyConnection,
    raw: SourceScan,
    view: StreamFeatureView,
    rows_from_us: int | None,
    rows_to_us: int,
    where: str | None = None,
) -> tuple[SourceScan, FeatureView]:
    """The view's rows in ``[rows_from, rows_to]`` (``rows_from`` None: all), registered in ``con``,
    computed from the raw events that meet ``where`` (None: all; an entity-hash range keeps whole
    entities, so their rows are exactly those of the unfiltered computation).

    Returns the scan over the registered rows and the view resolved against the raw source.
    The view's transforms must be bound (see ``ladle.repo.bind``).
    """
    resolved = view.resolve(raw.arrow_schema)
    lookback = resolved.max_window // timedelta(microseconds=1)
    from_us = None if rows_from_us is None else rows_from_us - lookback
    with translate_errors(f"reading the events of '{view.name}'"):
        events = con.sql(events_sql(raw, resolved, from_us, rows_to_us, where)).to_arrow_table()
    # imported here: the batch computation needs pandas (~50 MB of a process), which plain
    # materialization and retrieval never load
    from ladle.aggregation.batch import compute

    rows = compute(resolved, events, con=con)
    ts = resolved.batch_source.timestamp_field
    if rows_from_us is not None:
        rows = rows.filter(pc.greater_equal(rows.column(ts).cast(pa.int64()), rows_from_us))
    created = resolved.batch_source.created_timestamp_column
    if created:  # computed rows are unique per (key, time): nothing for a created time to break
        rows = rows.append_column(created, pa.nulls(rows.num_rows, _US))
    rows = rows.append_column(ROW_ID, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
    name = f"__ladle_computed_{next(_names)}"
    con.register(name, rows)
    rel = con.sql(f"SELECT * FROM {quote(name)} LIMIT 0")
    types = {n: str(t) for n, t in zip(rel.columns, rel.types, strict=True)}
    return SourceScan(raw.name, (), types, rows.schema, {}, table=name), resolved
