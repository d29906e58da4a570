"""Checks and column conversions shared by every online store's writes: columns and timestamps.

Conversions are column-wise (Arrow → NumPy → ``tolist``); nothing walks rows in Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.errors import SchemaMismatchError
from ladle.online.arrays import as_numpy, contiguous, int64_array
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP

_TS_US = pa.timestamp("us", tz="UTC")


def check_write_columns(view: FeatureView, rows: pa.Table) -> None:
    """Raise :class:`SchemaMismatchError` if rows lack a join key or the event timestamp."""
    missing = [c for c in (*view.join_keys, EVENT_TIMESTAMP) if c not in rows.column_names]
    if missing:
        raise SchemaMismatchError(
            f"rows for feature view '{view.name}' lack column(s) {missing}; columns given: {rows.column_names}"
        )


def timestamps_us(rows: pa.Table, view_name: str, now_us: int, created: bool) -> pa.Array:
    """Event (or created) timestamps as µs int64; a missing or null created timestamp means ``now``.

    The row format starts with these two (SQLite also keeps them in columns): newest-event-wins compares them.
    """
    name = CREATED_TIMESTAMP if created else EVENT_TIMESTAMP
    if name not in rows.column_names:
        if not created:
            raise SchemaMismatchError(f"rows for feature view '{view_name}' lack column '{name}'")
        return int64_array(np.full(rows.num_rows, now_us, dtype=np.int64))
    try:
        col = contiguous(rows.column(name)).cast(_TS_US).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(f"feature view '{view_name}': column '{name}' is not a timestamp: {exc}") from None
    if col.null_count:
        if not created:
            raise SchemaMismatchError(f"feature view '{view_name}': {col.null_count} row(s) have no event timestamp")
        # not ``fill_null(now_us)``: a Python scalar makes pyarrow import pandas (~50 MB)
        return int64_array(as_numpy(col, fill=now_us))
    return col
