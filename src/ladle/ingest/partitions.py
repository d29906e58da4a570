"""Idempotent writes of feature rows into a Parquet directory, one file per time partition.

A partition file is named ``<writer>-<period>.parquet`` (period ``YYYY-MM`` or ``YYYY-MM-DD`` of
the event time, UTC). Writing a window replaces the writer's rows inside the window and keeps its
rows outside it, so re-running the same window leaves the directory as it was: no duplicates.
Each file is written to a temporary name and renamed into place, so readers never see half a file.
Other writers' files (for example pushes) are never touched.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ladle.errors import DataSourceError

Granularity = Literal["month", "day"]
_WRITER = re.compile(r"^[A-Za-z0-9_]+$")


_FORMAT = {"month": "%Y-%m", "day": "%Y-%m-%d"}


def _period_labels(ts: pa.ChunkedArray | pa.Array, granularity: Granularity) -> pa.ChunkedArray | pa.Array:
    utc = pc.cast(ts, pa.timestamp("us", tz="UTC"))
    return pc.strftime(utc, format=_FORMAT[granularity])


def _in_window(ts: pa.ChunkedArray | pa.Array, start: datetime, end: datetime) -> pa.ChunkedArray | pa.Array:
    utc = pc.cast(ts, pa.timestamp("us", tz="UTC"))
    lo = pa.scalar(start, type=pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(end, type=pa.timestamp("us", tz="UTC"))
    return pc.and_(pc.greater_equal(utc, lo), pc.less(utc, hi))


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def replace_window(
    directory: Path,
    writer: str,
    rows: pa.Table,
    timestamp_column: str,
    start: datetime,
    end: datetime,
    granularity: Granularity = "month",
) -> int:
    """Make ``writer``'s rows with event time in ``[start, end)`` equal to ``rows``; return rows written.

    ``rows`` outside the window are ignored. Files of periods the window touches are rewritten;
    a period left with no rows loses its file.
    """
    if not _WRITER.match(writer):
        raise DataSourceError(f"partition writer name {writer!r} must be letters, digits and '_'")
    if timestamp_column not in rows.column_names:
        raise DataSourceError(f"rows have no timestamp column '{timestamp_column}'")
    directory.mkdir(parents=True, exist_ok=True)
    rows = rows.filter(_in_window(rows.column(timestamp_column), start, end))
    labels = _period_labels(rows.column(timestamp_column), granularity)
    # Periods with new rows, plus every existing file of this writer (it may hold rows to drop).
    periods = set(pc.unique(labels).to_pylist()) if len(rows) else set()
    pattern = re.compile(rf"^{re.escape(writer)}-(\d{{4}}-\d{{2}}(?:-\d{{2}})?)\.parquet$")
    periods |= {m.group(1) for p in directory.iterdir() if (m := pattern.match(p.name))}
    written = 0
    for period in sorted(periods):
        path = directory / f"{writer}-{period}.parquet"
        fresh = rows.filter(pc.equal(labels, period)) if len(rows) else rows
        parts = [fresh]
        if path.exists():
            old = pq.read_table(path)
            inside = _in_window(old.column(timestamp_column), start, end)
            if not len(fresh) and not pc.any(inside).as_py():
                continue  # nothing of this file is in the window: leave it as it is
            parts.insert(0, old.filter(pc.invert(inside)))
        non_empty = [p for p in parts if len(p)]
        # Older files may have been written with narrower types; promote rather than fail.
        merged = pa.concat_tables(non_empty, promote_options="permissive") if non_empty else None
        if merged is None:
            path.unlink(missing_ok=True)
            continue
        merged = merged.sort_by([(timestamp_column, "ascending")])
        _write_atomic(merged, path)
        written += len(fresh)
    return written
