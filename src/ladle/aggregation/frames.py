"""Moving columns between Arrow, pandas and NumPy for the incremental engine, and running transforms.

A view's ``udf`` and ``derive`` are pandas functions (docs/streaming.md rules 3 and 7). Both
executions hand ``udf`` a DataFrame of accepted events (duplicates included: identity comes after
it) and must know which event each output row came from, for its created time and offset: row-level
functions keep the DataFrame's index (filters like ``df.loc[mask]`` do), so the index says it (it
runs from ``n`` to ``2n - 1`` for ``n`` rows, so that a reset index is never mistaken for it). When
a function resets the index, the rows are matched back by join keys and event time instead; events
sharing one ``(K, t)`` are matched in order when the udf kept all of them, and refused when it kept
only some (nothing then says which).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ladle.errors import DefinitionError, SchemaMismatchError

if TYPE_CHECKING:
    from ladle.definitions import StreamFeatureView

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
TIMESTAMP = pa.timestamp("us", tz="UTC")


def micros(column: pa.ChunkedArray | pa.Array, what: str) -> I64:
    """A timestamp column as int64 microseconds since the epoch (UTC); nulls are refused."""
    if column.null_count:
        raise SchemaMismatchError(f"column '{what}' has null values; decoding dead-letters such events")
    if not (pa.types.is_timestamp(column.type) or pa.types.is_integer(column.type)):
        raise SchemaMismatchError(f"column '{what}' must be a timestamp, got {column.type}")
    try:
        if pa.types.is_timestamp(column.type) and column.type.unit != "us":
            column = column.cast(pa.timestamp("us", tz=column.type.tz))
        if pa.types.is_timestamp(column.type):  # µs already: its int64 storage, without a cast kernel
            return np.asarray(column.to_numpy()).view(np.int64)
        return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)
    except pa.ArrowInvalid as exc:  # e.g. nanoseconds that are not whole microseconds
        raise SchemaMismatchError(f"column '{what}' cannot be read to the microsecond: {exc}") from None


def series_micros(series: pd.Series, what: str) -> I64:
    """A pandas timestamp (or integer µs) column as int64 microseconds."""
    arr = pa.Array.from_pandas(series)
    return micros(arr, what)


def to_float(column: pa.ChunkedArray | pa.Array | pd.Series, numeric: bool, what: str) -> F64:
    """Values as float64 with NaN for missing; ``numeric=False`` keeps only presence (1.0 or NaN)."""
    if isinstance(column, pd.Series):
        column = pa.Array.from_pandas(column)
    if column.type == pa.float64() and not column.null_count:  # the common case: the floats themselves
        floats = _float64s(column)
        return floats if numeric else np.where(np.isnan(floats), np.nan, 1.0)
    if not numeric:  # only counted: presence, with NaN missing as everywhere else
        present = np.asarray(column.is_valid())
        if pa.types.is_floating(column.type):
            present &= ~np.isnan(np.asarray(column.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64))
        return np.where(present, 1.0, np.nan)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
        if pa.types.is_null(column.type):
            return np.full(len(column), np.nan)
        raise DefinitionError(f"aggregation over '{what}' needs numbers, but the column is {column.type}")
    values = column.cast(pa.float64())
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def _float64s(column: pa.ChunkedArray | pa.Array) -> F64:
    """A float64 column without nulls as NumPy (no copy for one chunk)."""
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks != 1:
            return np.concatenate([np.asarray(c.to_numpy(), np.float64) for c in column.chunks] or [np.zeros(0)])
        column = column.chunk(0)
    return np.asarray(column.to_numpy(), np.float64)


def run_udf(view: StreamFeatureView, rows: pa.Table, t: I64, ts: str | None = None) -> tuple[I64, pd.DataFrame]:
    """Apply ``view.udf`` to ``rows``: the positions (into ``rows``) of the rows it kept, and its output.

    ``t`` is the rows' event time in µs, under column ``ts`` (the source's ``timestamp_field`` when
    not given). Output row ``i`` belongs to input row ``positions[i]``.
    """
    assert view.udf is not None
    frame = rows.to_pandas()
    # index n .. 2n - 1: a reset index (0 .. m - 1, m <= n) can never pass for it
    frame.index = pd.RangeIndex(len(frame), 2 * len(frame))
    out = view.udf(frame)
    what = f"stream feature view '{view.name}': udf"
    if not isinstance(out, pd.DataFrame):
        raise DefinitionError(f"{what} must return a pandas DataFrame, got {type(out).__name__}")
    ts = ts or view.source.timestamp_field
    missing = [c for c in [*view.join_keys, ts] if c not in out.columns]
    if missing:
        raise DefinitionError(f"{what} dropped the columns {missing}; it must keep the join keys and event time")
    out_t = series_micros(out[ts], ts)
    positions = _by_index(view.join_keys, frame, t, out, out_t)
    if positions is None:
        positions = _by_identity(view.join_keys, frame, t, out, out_t, what)
    return positions, out.reset_index(drop=True)


def _by_index(keys: Sequence[str], frame: pd.DataFrame, t: I64, out: pd.DataFrame, out_t: I64) -> I64 | None:
    """Positions from the output's index, when it is the input's (kept by row-level pandas code)."""
    index = out.index
    if not pd.api.types.is_integer_dtype(index.dtype) or not index.is_unique:
        return None
    positions = np.asarray(index, dtype=np.int64) - len(frame)
    if len(positions) and (positions.min() < 0 or positions.max() >= len(frame)):
        return None
    if not np.array_equal(t[positions], out_t):
        return None
    if not all(np.array_equal(frame[k].to_numpy()[positions], out[k].to_numpy()) for k in keys):
        return None
    return positions


def _by_identity(keys: Sequence[str], frame: pd.DataFrame, t: I64, out: pd.DataFrame, out_t: I64, what: str) -> I64:
    """Positions found by (join keys, event time); events of one identity match in order when all were kept."""
    on = [*keys, "__t"]
    left = pd.DataFrame({**{k: frame[k].to_numpy() for k in keys}, "__t": t, "__row": np.arange(len(frame))})
    right = pd.DataFrame({**{k: out[k].to_numpy() for k in keys}, "__t": out_t, "__out": np.arange(len(out))})
    left["__n"] = left.groupby(on, sort=False, dropna=False).cumcount()
    right["__n"] = right.groupby(on, sort=False, dropna=False).cumcount()
    left["__of"] = left.groupby(on, sort=False, dropna=False)["__row"].transform("size")
    right["__of"] = right.groupby(on, sort=False, dropna=False)["__out"].transform("size")
    merged = right.merge(left, on=[*on, "__n"], how="left", sort=False, suffixes=("", "_in")).sort_values("__out")
    if len(merged) != len(out) or merged["__row"].isna().any():
        raise DefinitionError(f"{what} returned rows that match no input event; it must keep join keys and event time")
    if (merged["__of"] != merged["__of_in"]).any():
        raise DefinitionError(
            f"{what} lost the frame's index and kept only some of several events with one join key and event time, "
            "so which it kept is unknown; keep the index (row-level pandas filters such as df.loc[mask] do)"
        )
    return np.asarray(merged["__row"], dtype=np.int64)


def run_derive(view: StreamFeatureView, frame: pd.DataFrame) -> pd.DataFrame:
    """Apply ``view.derive`` to the aggregated rows; it must return one row per row, in order."""
    assert view.derive is not None
    out = view.derive(frame)
    if not isinstance(out, pd.DataFrame) or len(out) != len(frame):
        got = f"{len(out)} rows" if isinstance(out, pd.DataFrame) else type(out).__name__
        raise DefinitionError(
            f"stream feature view '{view.name}': derive must return a DataFrame with one row per input row "
            f"({len(frame)}), got {got}"
        )
    return out.reset_index(drop=True)


def arrow_column(values: object, dtype: pa.DataType, what: str) -> pa.Array:
    """A column of feature values (NumPy, pandas or Arrow) as ``dtype``; NaN becomes null."""
    try:
        if isinstance(values, np.ndarray) and values.dtype == np.float64:
            floats = pa.array(values, mask=np.isnan(values), type=pa.float64())
            return floats if dtype == pa.float64() else floats.cast(dtype)
        if isinstance(values, pa.ChunkedArray):
            arr = values.combine_chunks()
        elif isinstance(values, pa.Array):
            arr = values
        else:
            arr = pa.array(values, from_pandas=True)
        if pa.types.is_floating(arr.type):
            arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
        return arr if arr.type == dtype else arr.cast(dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(f"feature '{what}' cannot be stored as {dtype}: {exc}") from None
