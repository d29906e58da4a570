"""Checks and column conversions shared by every online store's writes: columns, key types, timestamps.

Conversions are column-wise (Arrow → NumPy → ``tolist``); nothing walks rows in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.errors import SchemaMismatchError
from ladle.online.arrays import contiguous
from ladle.online.keys import arrow_key_type, key_types_for, value_type_of
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP, ValueType

_TS_US = pa.timestamp("us", tz="UTC")


def check_write_columns(view: FeatureView, rows: pa.Table) -> None:
    """Raise :class:`SchemaMismatchError` if rows lack a join key or the event timestamp."""
    missing = [c for c in (*view.join_keys, EVENT_TIMESTAMP) if c not in rows.column_names]
    if missing:
        raise SchemaMismatchError(
            f"rows for feature view '{view.name}' lack column(s) {missing}; columns given: {rows.column_names}"
        )


def key_types_from_table(view: FeatureView, rows: pa.Table) -> dict[str, ValueType]:
    """Key types of the view, inferring undeclared ones from the Arrow columns."""
    declared = key_types_for(view)
    return {k: vt if vt is not None else arrow_key_type(k, rows.schema.field(k).type) for k, vt in declared.items()}


def infer_key_types(view: FeatureView, keys: Mapping[str, Sequence[Any]]) -> dict[str, ValueType]:
    """Key types of the view, inferring undeclared ones from the first request value."""
    out: dict[str, ValueType] = {}
    for name, declared in key_types_for(view).items():
        values = keys.get(name) or []
        if declared is not None:
            out[name] = declared
        else:
            out[name] = value_type_of(values[0]) if len(values) else ValueType.STRING
    return out


def timestamps_us(rows: pa.Table, view_name: str, now_us: int, created: bool) -> pa.Array:
    """Event (or created) timestamps as µs int64; a missing or null created timestamp means ``now``.

    Every row format stores these two: the newest-event-wins rule compares them.
    """
    name = CREATED_TIMESTAMP if created else EVENT_TIMESTAMP
    if name not in rows.column_names:
        if not created:
            raise SchemaMismatchError(f"rows for feature view '{view_name}' lack column '{name}'")
        return pa.array(np.full(rows.num_rows, now_us, dtype=np.int64))
    try:
        col = contiguous(rows.column(name)).cast(_TS_US).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(f"feature view '{view_name}': column '{name}' is not a timestamp: {exc}") from None
    if col.null_count:
        if not created:
            raise SchemaMismatchError(f"feature view '{view_name}': {col.null_count} row(s) have no event timestamp")
        col = col.fill_null(now_us)
    return col
