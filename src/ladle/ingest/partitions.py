"""Idempotent writes of feature rows into a Parquet directory, one file per time partition.

A partition file is named ``<writer>-<period>.parquet`` (period ``YYYY-MM`` or ``YYYY-MM-DD`` of
the event time, UTC). Writing a window replaces the writer's rows inside the window and keeps its
rows outside it, so re-running the same window leaves the directory as it was: no duplicates.
Other writers' files (for example pushes) are never touched.

Memory stays bounded whatever the size of the output, in two stages:

1. **Staging**: the rows arrive in pieces (a table, or any iterable of tables / record batches);
   each piece's rows in the window are appended to a hidden staging file per period as it
   arrives, so only one piece is held at a time. A failure here (a bad piece, say) removes the
   staging files: nothing is written.
2. **Merging**, period by period: DuckDB reads the period's file (its rows outside the window) and
   the staging file, sorts them by event time (DuckDB's sort spills to disk beyond
   ``memory_limit``) and writes a hidden temporary file, which is renamed into place: readers never
   see half a file. Old files written with narrower types are promoted (``union_by_name``).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ladle.errors import DataSourceError

if TYPE_CHECKING:
    import duckdb

Granularity = Literal["month", "day"]
#: Rows: one table, or pieces of it (what ``Ingestion.compute`` may return).
Rows: TypeAlias = pa.Table | pa.RecordBatch | Iterable[pa.Table | pa.RecordBatch]
_WRITER = re.compile(r"^[A-Za-z0-9_]+$")
_FORMAT = {"month": "%Y-%m", "day": "%Y-%m-%d"}
_US = pa.timestamp("us", tz="UTC")
#: DuckDB memory for a period's merge when no limit is given
DEFAULT_MEMORY_LIMIT = 256 * 2**20


def _period_labels(ts: pa.ChunkedArray | pa.Array, granularity: Granularity) -> pa.ChunkedArray | pa.Array:
    utc = pc.cast(ts, _US)
    return pc.strftime(utc, format=_FORMAT[granularity])


def _in_window(ts: pa.ChunkedArray | pa.Array, start: datetime, end: datetime) -> pa.ChunkedArray | pa.Array:
    utc = pc.cast(ts, _US)
    lo = pa.scalar(start, type=_US)
    hi = pa.scalar(end, type=_US)
    return pc.and_(pc.greater_equal(utc, lo), pc.less(utc, hi))


def pieces(rows: Rows) -> Iterator[pa.Table]:
    """The tables of ``rows``: itself when it is one table (or batch), else each piece in turn."""
    if isinstance(rows, pa.Table):
        yield rows
    elif isinstance(rows, pa.RecordBatch):
        yield pa.Table.from_batches([rows])
    else:
        for piece in rows:
            if isinstance(piece, pa.RecordBatch):
                yield pa.Table.from_batches([piece])
            elif isinstance(piece, pa.Table):
                yield piece
            else:
                raise DataSourceError(
                    f"ingestion rows must be Arrow tables or record batches, got a piece of type {type(piece).__name__}"
                )


class _Staging:
    """Hidden per-period files the window's new rows are appended to, piece by piece."""

    def __init__(self, directory: Path, writer: str) -> None:
        self.directory = directory
        self.writer = writer
        self.files: dict[str, tuple[pq.ParquetWriter, Path]] = {}
        self.rows: dict[str, int] = {}

    def add(self, period: str, rows: pa.Table) -> None:
        if period not in self.files:
            path = self.directory / f".{self.writer}-{period}.parquet.stage-{os.getpid()}"
            self.files[period] = (pq.ParquetWriter(path, rows.schema), path)
        writer, _ = self.files[period]
        if not rows.schema.equals(writer.schema):
            raise DataSourceError(
                f"ingestion rows changed their columns between pieces: {writer.schema} then {rows.schema}"
            )
        writer.write_table(rows)
        self.rows[period] = self.rows.get(period, 0) + rows.num_rows

    def close(self) -> dict[str, Path]:
        for writer, _ in self.files.values():
            writer.close()
        return {period: path for period, (_, path) in self.files.items()}

    def discard(self) -> None:
        for writer, path in self.files.values():
            try:
                writer.close()
            finally:
                path.unlink(missing_ok=True)


def _stage(
    staging: _Staging, rows: Rows, timestamp_column: str, start: datetime, end: datetime, granularity: Granularity
) -> None:
    pool = pa.default_memory_pool()
    for piece in pieces(rows):
        if timestamp_column not in piece.column_names:
            raise DataSourceError(f"rows have no timestamp column '{timestamp_column}'")
        _stage_piece(staging, piece, timestamp_column, start, end, granularity)
        del piece
        pool.release_unused()  # give the piece's memory back before the next one is made


def _stage_piece(
    staging: _Staging, piece: pa.Table, timestamp_column: str, start: datetime, end: datetime, granularity: Granularity
) -> None:
    """Append a piece's rows in the window to the staging files of their periods, copying only when the
    piece straddles the window or several periods (a piece inside one period is written as it is)."""
    mask = _in_window(piece.column(timestamp_column), start, end)
    inside = piece if pc.all(mask).as_py() else piece.filter(mask)
    if not inside.num_rows:
        return
    bounds = pc.min_max(pc.cast(inside.column(timestamp_column), _US))
    edges = _period_labels(pa.array([bounds["min"].value, bounds["max"].value], _US), granularity).to_pylist()
    if edges[0] == edges[1]:
        staging.add(edges[0], inside)
        return
    labels = _period_labels(inside.column(timestamp_column), granularity)
    for period in pc.unique(labels).to_pylist():
        staging.add(period, inside.filter(pc.equal(labels, period)))


def replace_window(
    directory: Path,
    writer: str,
    rows: Rows,
    timestamp_column: str,
    start: datetime,
    end: datetime,
    granularity: Granularity = "month",
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> int:
    """Make ``writer``'s rows with event time in ``[start, end)`` equal to ``rows``; return rows written.

    ``rows`` is a table or an iterable of pieces (tables or record batches), consumed once; rows
    outside the window are ignored. Files of periods the window touches are rewritten; a period
    left with no rows loses its file. ``memory_limit`` (bytes) bounds DuckDB's part of each merge.
    """
    if not _WRITER.match(writer):
        raise DataSourceError(f"partition writer name {writer!r} must be letters, digits and '_'")
    directory.mkdir(parents=True, exist_ok=True)
    staging = _Staging(directory, writer)
    try:
        _stage(staging, rows, timestamp_column, start, end, granularity)
        staged = staging.close()
    except BaseException:
        staging.discard()
        raise
    # Periods with new rows, plus every existing file of this writer (it may hold rows to drop).
    pattern = re.compile(rf"^{re.escape(writer)}-(\d{{4}}-\d{{2}}(?:-\d{{2}})?)\.parquet$")
    periods = set(staged) | {m.group(1) for p in directory.iterdir() if (m := pattern.match(p.name))}
    con = _connect(memory_limit)
    try:
        for period in sorted(periods):
            path = directory / f"{writer}-{period}.parquet"
            _merge(con, path, staged.get(period), timestamp_column, start, end)
    finally:
        con.close()
        for path in staged.values():
            path.unlink(missing_ok=True)
    return sum(staging.rows.values())


def _connect(memory_limit: int) -> duckdb.DuckDBPyConnection:
    import duckdb

    spill = str(Path(tempfile.gettempdir()) / "ladle-duckdb-spill")
    con = duckdb.connect(
        ":memory:",
        config={"memory_limit": f"{max(memory_limit, 32 * 2**20) // 2**20}MB", "threads": 1, "temp_directory": spill},
    )
    con.execute("SET TimeZone = 'UTC'")
    return con


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _merge(
    con: duckdb.DuckDBPyConnection, path: Path, staged: Path | None, ts: str, start: datetime, end: datetime
) -> None:
    """Rewrite one period's file: its rows outside the window, then the staged rows, by event time."""
    column = '"' + ts.replace('"', '""') + '"'
    inside = (
        f"(CAST({column} AS TIMESTAMPTZ) >= {_literal(start.isoformat())}::TIMESTAMPTZ "
        f"AND CAST({column} AS TIMESTAMPTZ) < {_literal(end.isoformat())}::TIMESTAMPTZ)"
    )
    files = [str(p) for p in (path, staged) if p is not None and p.exists()]
    if not files:
        return
    if staged is None:
        row = con.execute(f"SELECT count(*) FROM read_parquet({_literal(str(path))}) WHERE {inside}").fetchone()
        if not row or not row[0]:
            return  # nothing of this file is in the window: leave it as it is
    listed = ", ".join(_literal(f) for f in files)
    new = files.index(str(staged)) if staged is not None and str(staged) in files else -1
    # file_index and file_row_number are DuckDB's virtual columns: ``SELECT *`` leaves them out
    select = (
        f"SELECT * FROM read_parquet([{listed}], union_by_name = true) "
        f"WHERE file_index = {new} OR NOT {inside} ORDER BY {column}, file_index, file_row_number"
    )
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        con.execute(f"COPY ({select}) TO {_literal(str(tmp))} (FORMAT parquet)")
        if pq.read_metadata(tmp).num_rows:
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
