"""``ladle ingest`` into a store that replaces windows itself (Iceberg, Doris), in bounded memory.

The store's ``replace_window`` takes one Arrow table. While the ingestion's pieces fit
``chunk_bytes`` they are held and sent in one call: one commit for the whole window, as before.
Beyond that, the pieces are spilled as they arrive into one hidden Parquet file (only the rows in
the window; one piece held at a time), and the window is replaced **time chunk by time chunk**:

1. an hourly histogram of the staged rows (the event-time column only, row group by row group)
   cuts the window into consecutive chunks of at most ``chunk_bytes`` of rows each (whole hours;
   an hour holding more is one chunk of its own);
2. each chunk ``[a, b)`` is read back from the staging file (row groups whose statistics miss the
   chunk are skipped) and replaces the store's rows in ``[a, b)``: one overwrite per chunk.

The chunks tile the window exactly (the first starts at its start, the last ends at its end), so
rows stored in hours without new rows are still deleted, by the chunk that spans them. Every
chunk is idempotent (a re-run of the window writes the same chunks), but the window is no longer
one commit: a failure after some chunks leaves those replaced and the rest as they were, and the
command can simply be re-run (docs/scaling.md, "Bounded ingest").
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_US = pa.timestamp("us", tz="UTC")
_HOUR_US = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Rows per row group of the staging file (what a chunk read holds besides the chunk).
STAGE_ROW_GROUP = 65_536

#: ``replace(rows, start, end) -> rows written``: the store's replacement of one window.
Replace = Callable[[pa.Table, datetime, datetime], int]


@dataclass(frozen=True)
class Chunk:
    """A piece ``[start, end)`` of the window and the staged rows inside it."""

    start: datetime
    end: datetime
    rows: int


def in_window(piece: pa.Table, timestamp_column: str, start: datetime, end: datetime) -> pa.Table:
    """The rows of ``piece`` with ``start <= event time < end`` (the piece itself when all are)."""
    stamps = pc.cast(piece.column(timestamp_column), _US)
    mask = pc.and_(pc.greater_equal(stamps, pa.scalar(start, _US)), pc.less(stamps, pa.scalar(end, _US))).fill_null(
        False
    )
    return piece if pc.all(mask).as_py() else piece.filter(mask)


def replace_bounded(
    pieces: Iterator[pa.Table],
    timestamp_column: str,
    start: datetime,
    end: datetime,
    replace: Replace,
    empty: pa.Schema,
    chunk_bytes: int,
) -> int:
    """Replace the window ``[start, end)`` with ``pieces`` (tables of schema ``empty``) through ``replace``,
    holding at most about ``chunk_bytes`` of rows (see the module docstring); return the rows written."""
    held: list[pa.Table] = []
    held_bytes = 0
    for raw in pieces:
        piece = in_window(raw, timestamp_column, start, end)
        if not piece.num_rows:
            continue
        held.append(piece)
        held_bytes += piece.nbytes
        if held_bytes > chunk_bytes:
            return _spilled(held, pieces, timestamp_column, start, end, replace, chunk_bytes)
    rows = pa.concat_tables(held) if held else empty.empty_table()
    return replace(rows, start, end)


def _spilled(
    held: list[pa.Table],
    rest: Iterator[pa.Table],
    timestamp_column: str,
    start: datetime,
    end: datetime,
    replace: Replace,
    chunk_bytes: int,
) -> int:
    """The held pieces and the rest of the stream staged on disk, then replaced chunk by chunk."""
    workdir = Path(tempfile.mkdtemp(prefix="ladle-ingest-"))
    try:
        path = workdir / "staged.parquet"
        total_rows, total_bytes = _stage(path, held, rest, timestamp_column, start, end)
        per_row = max(1.0, total_bytes / max(total_rows, 1))
        chunks = plan_chunks(hourly_counts(path, timestamp_column), start, end, max(1, int(chunk_bytes / per_row)))
        written = 0
        for chunk in chunks:
            written += replace(read_chunk(path, timestamp_column, chunk), chunk.start, chunk.end)
        return written
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _stage(
    path: Path,
    held: list[pa.Table],
    rest: Iterator[pa.Table],
    timestamp_column: str,
    start: datetime,
    end: datetime,
) -> tuple[int, int]:
    """Write the held pieces, then every further piece's rows in the window, to ``path``; rows and bytes."""
    pool = pa.default_memory_pool()
    writer = pq.ParquetWriter(path, held[0].schema)
    rows = nbytes = 0
    try:
        for piece in held:
            writer.write_table(piece, row_group_size=STAGE_ROW_GROUP)
            rows, nbytes = rows + piece.num_rows, nbytes + piece.nbytes
        held.clear()
        pool.release_unused()
        for raw in rest:
            piece = in_window(raw, timestamp_column, start, end)
            if piece.num_rows:
                writer.write_table(piece.cast(writer.schema), row_group_size=STAGE_ROW_GROUP)
                rows, nbytes = rows + piece.num_rows, nbytes + piece.nbytes
            del raw, piece
            pool.release_unused()  # give the piece's memory back before the next one is made
    finally:
        writer.close()
    return rows, nbytes


def hourly_counts(path: Path, timestamp_column: str) -> dict[int, int]:
    """Staged rows per hour since the epoch (UTC), read one row group's event times at a time."""
    counts: dict[int, int] = {}
    reader = pq.ParquetFile(path)
    for group in range(reader.num_row_groups):
        stamps = reader.read_row_group(group, columns=[timestamp_column]).column(0)
        hours = np.floor_divide(pc.cast(pc.cast(stamps, _US), pa.int64()).to_numpy(), _HOUR_US)
        for hour, n in zip(*np.unique(hours, return_counts=True), strict=True):
            counts[int(hour)] = counts.get(int(hour), 0) + int(n)
    return counts


def plan_chunks(counts: dict[int, int], start: datetime, end: datetime, chunk_rows: int) -> list[Chunk]:
    """Consecutive chunks tiling ``[start, end)``, each of whole hours holding at most ``chunk_rows`` rows
    (an hour holding more is a chunk alone); the first starts at ``start``, the last ends at ``end``."""
    chunks: list[Chunk] = []
    lo, rows = start, 0
    for hour in sorted(counts):
        n = counts[hour]
        at = max(_EPOCH + timedelta(microseconds=hour * _HOUR_US), start)
        if rows and rows + n > chunk_rows and at > lo:
            chunks.append(Chunk(lo, at, rows))
            lo, rows = at, 0
        rows += n
    chunks.append(Chunk(lo, end, rows))
    return chunks


def read_chunk(path: Path, timestamp_column: str, chunk: Chunk) -> pa.Table:
    """The staged rows of ``chunk``, row group by row group (groups whose min/max miss it are skipped)."""
    reader = pq.ParquetFile(path)
    column = reader.schema_arrow.get_field_index(timestamp_column)
    lo, hi = pa.scalar(chunk.start, _US), pa.scalar(chunk.end, _US)
    lo_us, hi_us = _micros(chunk.start), _micros(chunk.end)
    parts: list[pa.Table] = []
    for group in range(reader.num_row_groups):
        # the staged event times are timestamp[us] (check_rows): raw statistics are microseconds
        stats = reader.metadata.row_group(group).column(column).statistics
        if stats is not None and stats.has_min_max and (stats.max_raw < lo_us or stats.min_raw >= hi_us):
            continue
        table = reader.read_row_group(group)
        stamps = pc.cast(table.column(timestamp_column), _US)
        mask = pc.and_(pc.greater_equal(stamps, lo), pc.less(stamps, hi)).fill_null(False)
        if pc.any(mask).as_py():
            parts.append(table.filter(mask))
    return pa.concat_tables(parts) if parts else reader.schema_arrow.empty_table()


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)
