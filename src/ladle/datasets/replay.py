"""Replaying historical data as if it were live.

The public data sets end years ago (WTI 2019, US macro 2009, NYC weather 2013), and a feature
store serves what is fresh now: online reads enforce each view's ttl. A replay moves a data set
forward in time by a whole number of ``step`` (a day keeps the time of day of daily closes, an
hour keeps hourly observations on the hour) so that its last observation lands at or just before
``now``. Values are untouched; the original time is kept in ``original_<column>`` so every replayed
row can be traced back to the real observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc


def replay_offset(last: datetime, now: datetime, step: timedelta = timedelta(days=1)) -> timedelta:
    """The largest multiple of ``step`` that moves ``last`` to a time at or before ``now``."""
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    last_utc = last.astimezone(UTC) if last.tzinfo else last.replace(tzinfo=UTC)
    now_utc = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    return ((now_utc - last_utc) // step) * step


def shift_times(table: pa.Table, columns: Sequence[str], offset: timedelta, keep_original: str = "") -> pa.Table:
    """``table`` with each timestamp column moved by ``offset``.

    With ``keep_original`` set to a column name, that column's unshifted values are kept as
    ``original_<name>``.
    """
    out = table
    if keep_original:
        out = out.append_column(f"original_{keep_original}", table.column(keep_original))
    delta = pa.scalar(offset, type=pa.duration("us"))
    for name in columns:
        column = pc.cast(out.column(name), pa.timestamp("us", tz="UTC"))
        out = out.set_column(out.schema.get_field_index(name), name, pc.add(column, delta))
    return out


def latest(table: pa.Table, column: str) -> datetime:
    """The newest value of a timestamp column (UTC)."""
    value = pc.max(pc.cast(table.column(column), pa.timestamp("us", tz="UTC"))).as_py()
    if value is None:
        raise ValueError(f"column {column} has no values")
    moment: datetime = value
    return moment
