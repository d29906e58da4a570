"""Entity-hash range pulls over the DuckDB offline store (:class:`.partitions.PartitionedPull`).

The newest-row SQL is the store's own (:func:`ladle.offline.pull.latest_sql`); only the relation it
reads changes: the source, filtered to the rows whose join keys (as the view types them) hash into
the range. DuckDB's ``hash`` is stable within a process, which is all one materialization needs.

Views computed from raw events (stream views with aggregations) are not split: their rows are
computed in memory once per pull, so a range pull would recompute them per chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.errors import RequestError
from ladle.materialize.partitions import HashRange
from ladle.offline import pull
from ladle.offline.computed import is_computed
from ladle.offline.job import translate_errors
from ladle.offline.sources import SourceScan, check_view
from ladle.times import to_utc

if TYPE_CHECKING:
    import duckdb

    from ladle.offline.duckdb import DuckDBOfflineStore

#: Rows sampled to estimate how many distinct entities a large window holds.
SAMPLE_ROWS = 65_536
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _RangeScan(SourceScan):
    """A source scan restricted by a row condition (the hash range)."""

    condition: str = "TRUE"

    @property
    def relation(self) -> str:
        """The source's relation, filtered."""
        return f"(SELECT * FROM {super().relation} WHERE {self.condition})"


def _micros(value: datetime) -> int:
    """UTC microseconds since the epoch (naive = UTC)."""
    return (to_utc(value) - _EPOCH) // timedelta(microseconds=1)


def _key_hash(scan: SourceScan, view: FeatureView) -> str:
    keys = ", ".join(scan.cast(f.name, f.dtype) for f in view.entity_columns)
    return f"hash({keys})"


class DuckDBRangePull:
    """Range pulls and entity estimates for a :class:`~ladle.offline.duckdb.DuckDBOfflineStore`."""

    def __init__(self, store: DuckDBOfflineStore) -> None:
        self.store = store

    def _open(self, view: FeatureView) -> tuple[duckdb.DuckDBPyConnection, SourceScan, FeatureView] | None:
        con = self.store._cursor()
        scan = self.store._scan(con, view.batch_source, allow_empty=True)
        if not scan.files:
            con.close()
            return None
        return con, scan, check_view(scan, view)

    def estimate_entities(self, view: FeatureView, start: datetime, end: datetime) -> int:
        """Distinct entities of the window, from the files' row counts and a sample of the window's rows.

        Row counts come from Parquet footers (an upper bound); if they exceed ``SAMPLE_ROWS``, the
        first ``SAMPLE_ROWS`` rows of the window give the distinct-entities-per-row ratio.
        Computed views report 0 (never split).
        """
        if is_computed(view):
            return 0
        opened = self._open(view)
        if opened is None:
            return 0
        con, scan, resolved = opened
        try:
            files = ", ".join("'" + f.replace("'", "''") + "'" for f in scan.files)
            with translate_errors(f"reading the row counts of '{view.name}'"):
                row = con.execute(f"SELECT sum(num_rows)::BIGINT FROM parquet_file_metadata([{files}])").fetchone()
            total = int(row[0]) if row and row[0] is not None else 0
            if total <= SAMPLE_ROWS or not resolved.join_keys:
                return total
            window = pull._window(scan, resolved, _micros(start), _micros(end))
            sample = (
                f"SELECT count(*), approx_count_distinct({_key_hash(scan, resolved)}) FROM "
                f"(SELECT * FROM {scan.relation} WHERE {window} LIMIT {SAMPLE_ROWS})"
            )
            with translate_errors(f"sampling '{view.name}'"):
                row = con.execute(sample).fetchone()
            sampled, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
            if sampled < SAMPLE_ROWS:  # the whole window was sampled
                return distinct
            return max(distinct, total * distinct // sampled)
        finally:
            con.close()

    def pull_latest_range(
        self, view: FeatureView, start: datetime, end: datetime, part: HashRange, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """``pull_latest`` restricted to the entities whose key hash falls in ``part``."""
        if batch_rows <= 0:
            raise RequestError(f"batch_rows must be positive, got {batch_rows}")
        if part.whole or is_computed(view) or not view.join_keys:
            return self.store.pull_latest(view, start, end, batch_rows=batch_rows)
        opened = self._open(view)
        if opened is None:
            return iter(())
        con, scan, resolved = opened
        condition = f"{_key_hash(scan, resolved)} % {part.buckets} BETWEEN {part.lo} AND {part.hi - 1}"
        fields = {name: getattr(scan, name) for name in SourceScan.__dataclass_fields__}
        ranged = _RangeScan(**fields, condition=condition)
        sql = pull.latest_sql(ranged, resolved, _micros(start), _micros(end))
        with translate_errors(f"reading '{view.name}'"):
            reader = con.sql(sql).to_arrow_reader(batch_rows)
        return _batches(con, reader, view.name)


def _batches(con: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader, name: str) -> Iterator[pa.RecordBatch]:
    # ``con`` is held so the connection outlives the reader.
    try:
        with translate_errors(f"reading '{name}'"):
            yield from reader
    finally:
        con.close()
