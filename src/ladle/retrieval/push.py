"""``push`` and ``write_to_online_store``: fresh rows into the online (and offline) store.

Input is a pandas DataFrame, an Arrow table or a dict of columns (scalars broadcast, as Feast's
server does). Columns are named like the view's join keys and features (or like the source's
columns when the source has a ``field_mapping``); the event timestamp is the source's
``timestamp_field`` (or ``event_timestamp``), the created timestamp its ``created_timestamp_column``
when given. Timestamps may be datetimes, ISO 8601 strings or epoch seconds; naive ones are UTC.

Everything is validated for every target view before anything is written: a missing column or a
value that cannot be stored as the declared dtype raises :class:`SchemaMismatchError` and nothing
is written anywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import DataSource, FeatureView
from ladle.documents import to_json_column
from ladle.errors import FutureEventTimeError, RequestError, SchemaMismatchError
from ladle.retrieval.on_demand_write import write_derived
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP, DType, ValueType

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore
    from ladle.online.base import OnlineStore
    from ladle.registry.base import RegistrySnapshot

Frame: TypeAlias = pd.DataFrame | pa.Table | Mapping[str, Any]
#: Where pushed rows go (Feast's ``PushMode``, by name).
PushMode = Literal["online", "offline", "online_and_offline"]
PUSH_MODES: tuple[PushMode, ...] = ("online", "offline", "online_and_offline")
_TS = pa.timestamp("us", tz="UTC")


def push(
    snapshot: RegistrySnapshot,
    offline_store: OfflineStore,
    online_store: OnlineStore,
    push_source_name: str,
    df: Frame,
    to: str = "online",
    max_future_skew: float | None = None,
) -> int:
    """Write rows to every view fed by the push source; return the rows written online.

    ``max_future_skew`` (seconds): rows with event times beyond now + skew refuse the whole batch.
    """
    if to not in PUSH_MODES:
        raise RequestError(f"push 'to' must be one of {', '.join(PUSH_MODES)}, got {to!r}")
    snapshot.push_source(push_source_name)
    views = snapshot.views_fed_by(push_source_name)
    table = to_arrow(df)
    prepared = [(view, view_rows(view, table)) for view in views]
    for view, rows in prepared:
        check_future_skew(view, rows, max_future_skew)
    if to != "online":
        for source, rows in offline_rows(prepared):
            offline_store.append(source, rows)
    written = 0
    if to != "offline":
        for view, rows in prepared:
            if view.online:
                written += online_store.write(snapshot.project, view, rows)
                write_derived(snapshot, online_store, view, rows)  # write_to_online_store ODFVs
    return written


def write_to_online_store(
    snapshot: RegistrySnapshot,
    online_store: OnlineStore,
    feature_view_name: str,
    df: Frame,
    max_future_skew: float | None = None,
) -> int:
    """Validate rows against one view and write them to the online store; return rows written."""
    view = snapshot.feature_view(feature_view_name)
    rows = view_rows(view, to_arrow(df))
    check_future_skew(view, rows, max_future_skew)
    written = online_store.write(snapshot.project, view, rows)
    write_derived(snapshot, online_store, view, rows)  # write_to_online_store ODFVs
    return written


def check_future_skew(view: FeatureView, rows: pa.Table, max_future_skew: float | None) -> None:
    """Refuse rows whose event time is more than ``max_future_skew`` seconds past now (None/0: no check)."""
    if not max_future_skew or rows.num_rows == 0:
        return
    newest = pc.max(rows.column(EVENT_TIMESTAMP)).value  # µs since the epoch (view_rows: no nulls)
    limit_us = time.time_ns() // 1000 + int(max_future_skew * 1_000_000)
    if newest is not None and newest > limit_us:
        when = datetime.fromtimestamp(newest / 1e6, UTC).isoformat()
        ahead = (newest - limit_us) / 1e6 + max_future_skew
        raise FutureEventTimeError(
            f"feature view '{view.name}': event time {when} is {ahead:.0f} s in the future; the limit is "
            f"{max_future_skew:g} s (write_safety.max_future_skew_seconds); nothing was written"
        )


# -- input ------------------------------------------------------------------------------------------


def to_arrow(df: Frame) -> pa.Table:
    """An Arrow table from a DataFrame, a table, or a dict of columns (scalars broadcast)."""
    try:
        if isinstance(df, pa.Table):
            return df
        if isinstance(df, pd.DataFrame):
            return pa.Table.from_pandas(df, preserve_index=False)
        if isinstance(df, Mapping):
            return _from_mapping(df)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise SchemaMismatchError(f"rows cannot be read as a table: {exc}") from None
    raise SchemaMismatchError(f"rows must be a pandas DataFrame, an Arrow table or a dict of columns, got {type(df)}")


def _from_mapping(columns: Mapping[str, Any]) -> pa.Table:
    def is_column(v: Any) -> bool:
        return isinstance(v, list | tuple | np.ndarray | pd.Series | pa.Array | pa.ChunkedArray)

    lengths = {len(v) for v in columns.values() if is_column(v)}
    if len(lengths) > 1:
        sizes = {k: len(v) for k, v in columns.items() if is_column(v)}
        raise SchemaMismatchError(f"columns have different lengths: {sizes}")
    if not lengths and columns:
        raise SchemaMismatchError("every value is a scalar: give at least one column as a list")
    n = lengths.pop() if lengths else 0
    arrays = {}
    for name, value in columns.items():
        if isinstance(value, pa.Array | pa.ChunkedArray):
            arrays[name] = value
        elif is_column(value):
            arrays[name] = pa.array(list(value) if isinstance(value, tuple) else value)
        else:
            arrays[name] = pa.array([value] * n)
    return pa.table(arrays)


# -- per view ---------------------------------------------------------------------------------------


def view_rows(view: FeatureView, table: pa.Table) -> pa.Table:
    """The canonical online rows of ``view`` (join keys, features, event and created timestamps)."""
    source = view.batch_source
    reverse = {dst: src for src, dst in source.field_mapping.items()}
    given = set(table.column_names)

    def find(name: str) -> str | None:
        for candidate in (name, reverse.get(name)):
            if candidate is not None and candidate in given:
                return candidate
        return None

    ts_name = next((c for c in (source.timestamp_field, EVENT_TIMESTAMP) if c and c in given), None)
    missing = [n for n in (*view.join_keys, *view.feature_names) if find(n) is None]
    if ts_name is None:
        missing.append(source.timestamp_field or EVENT_TIMESTAMP)
    if missing:
        raise SchemaMismatchError(
            f"rows for feature view '{view.name}' lack column(s) {missing}; columns given: {table.column_names}"
        )
    dtypes = {f.name: f.dtype for f in (*view.entity_columns, *view.features)}
    out: dict[str, pa.Array] = {}
    for name in (*view.join_keys, *view.feature_names):
        col = table.column(find(name)).combine_chunks()
        out[name] = _cast(view, name, col, dtypes.get(name))
    out[EVENT_TIMESTAMP] = timestamps(table.column(ts_name), f"{view.name}.{ts_name}")
    if out[EVENT_TIMESTAMP].null_count:
        raise SchemaMismatchError(f"feature view '{view.name}': some rows have no event timestamp '{ts_name}'")
    created = source.created_timestamp_column
    if created and created in given:
        out[CREATED_TIMESTAMP] = timestamps(table.column(created), f"{view.name}.{created}")
    return pa.table(out)


def timestamps(column: pa.Array | pa.ChunkedArray, label: str) -> pa.Array:
    """Datetimes, ISO 8601 strings or epoch seconds as timestamp[us, UTC] (naive = UTC)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    try:
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            unit = pa.timestamp("us", tz=t.tz if pa.types.is_timestamp(t) else None)
            return arr.cast(unit, safe=False).cast(_TS)  # below-µs digits are dropped
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return _parse_iso(arr)
        if pa.types.is_integer(t):
            return pc.multiply_checked(arr.cast(pa.int64()), 1_000_000).cast(_TS)
        if pa.types.is_floating(t):
            return pc.round(pc.multiply(arr.cast(pa.float64()), 1e6)).cast(pa.int64()).cast(_TS)
        if pa.types.is_null(t):
            return pa.nulls(len(arr), _TS)
    except (pa.ArrowInvalid, ValueError, TypeError, OverflowError) as exc:
        raise SchemaMismatchError(f"column '{label}' has values that are not timestamps: {exc}") from None
    raise SchemaMismatchError(f"column '{label}' is {t}; expected datetimes, ISO 8601 strings or epoch seconds")


def _parse_iso(arr: pa.Array) -> pa.Array:
    """ISO 8601 strings → timestamp[us, UTC]; a few with ``datetime.fromisoformat``, many with pandas."""
    texts = arr.to_pylist()
    if len(texts) <= 64:  # pandas' per-call cost dominates a single pushed event
        try:
            return pa.array([None if t is None else _iso_one(t) for t in texts], _TS)
        except ValueError:
            pass  # a form fromisoformat does not read: let pandas try
    parsed = pd.to_datetime(pd.Series(texts, dtype=object), utc=True, format="ISO8601")
    return pa.Array.from_pandas(parsed).cast(_TS, safe=False)


def _iso_one(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytes"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    return str(t)


def _cast(view: FeatureView, name: str, col: pa.Array, dtype: DType | None) -> pa.Array:
    if dtype is None:  # a join key whose type nobody declared: stored as given
        return col
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), dtype.arrow)
    where = f"feature view '{view.name}': column '{name}'"
    if dtype.is_document:  # Map / Json / Struct: objects or JSON text, stored as JSON text
        return to_json_column(name, col, dtype)
    if dtype.value_type == ValueType.UNIX_TIMESTAMP:
        return timestamps(col, f"{view.name}.{name}")
    if dtype.element is not None and _kind(col.type) == "list" and pa.types.is_null(col.type.value_type):
        return col.cast(dtype.arrow)
    expected = _kind(dtype.arrow)
    if dtype.element is not None and _kind(col.type) == "list":
        if _kind(col.type.value_type) != _kind(dtype.element.arrow):
            raise SchemaMismatchError(f"{where} is {col.type} but the view declares {dtype}")
    elif _kind(col.type) != expected:
        raise SchemaMismatchError(f"{where} is {col.type} but the view declares {dtype}")
    try:
        return col.cast(dtype.arrow, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(f"{where} cannot be stored as {dtype}: {exc}") from None


# -- offline ----------------------------------------------------------------------------------------


def offline_rows(prepared: Sequence[tuple[FeatureView, pa.Table]]) -> list[tuple[DataSource, pa.Table]]:
    """Rows to append per distinct batch source, in the source's own column names."""
    by_source: dict[str, tuple[DataSource, dict[str, pa.Array]]] = {}
    now_us = time.time_ns() // 1000
    for view, rows in prepared:
        source = view.batch_source
        key = json.dumps(source.to_spec(), sort_keys=True)
        _, columns = by_source.setdefault(key, (source, {}))
        reverse = {dst: src for src, dst in source.field_mapping.items()}
        for name in (*view.join_keys, *view.feature_names):
            columns[reverse.get(name, name)] = rows.column(name)
        columns[source.timestamp_field or EVENT_TIMESTAMP] = rows.column(EVENT_TIMESTAMP)
        if source.created_timestamp_column:
            created = (
                rows.column(CREATED_TIMESTAMP)
                if CREATED_TIMESTAMP in rows.column_names
                else pa.array(np.full(rows.num_rows, now_us, dtype=np.int64)).cast(_TS)
            )
            columns[source.created_timestamp_column] = created
    return [(source, pa.table(columns)) for source, columns in by_source.values()]
