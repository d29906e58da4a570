"""Entity-hash range pulls and entity estimates over a :class:`SourceScan` (DuckDB and Iceberg stores).

These are the two halves of the optional ``PartitionedPull`` capability
(``ladle.materialize.partitions``) that materialization in bounded memory uses:

* :func:`range_batches`: ``pull_latest`` restricted to the entities whose key hash
  (:mod:`ladle.offline.hashing`) falls in a range; the range is a row condition of the pull's own
  SQL (:func:`ladle.offline.pull.latest_sql`), so Parquet row groups are still skipped by time.
  Stream views computed from raw events with aggregations filter their **raw events** by the same
  hash of the keys before computing, so a chunk computes only its own entities' rows (with a
  ``udf``, which may derive its keys from any column, the computed rows are filtered instead).
* :func:`estimate_entities`: a cheap estimate of the distinct entities in a window, from the row
  count (Parquet footers, or the Iceberg plan) and a sample of the window's first rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.offline import pull
from ladle.offline.computed import computed_scan, is_computed
from ladle.offline.hashing import HashRange, range_condition, scan_keys
from ladle.offline.job import translate_errors
from ladle.offline.sources import SourceScan, check_view, literal
from ladle.times import to_utc

if TYPE_CHECKING:
    import duckdb


def pull_threads(configured: int | None) -> int:
    """DuckDB threads of materialization pulls: the store's ``threads`` when set, else one per core but
    one, which is left to the online writer that encodes and sends the pulled rows meanwhile.

    Measured on 2 cores (W1b, 1,000,000 entities into Redis): one pull thread took 1.6 s and peaked at
    412 MB against 3.0 s and 508 MB with two, whose second thread competed with the writer and kept
    a second thread's hash tables and buffers.
    """
    if configured:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


#: Rows sampled to estimate how many distinct entities a large window holds.
SAMPLE_ROWS = 65_536
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(value: datetime) -> int:
    """UTC microseconds since the epoch (naive = UTC)."""
    return (to_utc(value) - _EPOCH) // timedelta(microseconds=1)


def footer_rows(con: duckdb.DuckDBPyConnection, scan: SourceScan, label: str) -> int:
    """Rows in the scan's Parquet files, from their footers (a registered table: its row count)."""
    if scan.table:
        sql = f"SELECT count(*) FROM {scan.relation}"
    elif scan.files:
        files = ", ".join(literal(f) for f in scan.files)
        sql = f"SELECT sum(num_rows)::BIGINT FROM parquet_file_metadata([{files}])"
    else:
        return 0
    with translate_errors(f"reading the row counts of '{label}'"):
        row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def estimate_entities(
    con: duckdb.DuckDBPyConnection, scan: SourceScan, view: FeatureView, start: datetime, end: datetime, total: int
) -> int:
    """Distinct entities with rows in ``[start, end]``, estimated from ``total`` (the rows of the scan,
    an upper bound) and the first :data:`SAMPLE_ROWS` rows of the window.

    For a computed view ``scan`` is its raw events (one event per row at most: the same bound).
    """
    if is_computed(view) and view.udf is not None:
        return total  # a udf may make its keys from any column: the raw rows bound the entities
    resolved = view.resolve(scan.arrow_schema) if is_computed(view) else check_view(scan, view)
    if total <= SAMPLE_ROWS or not resolved.join_keys:
        return total
    keys = ", ".join(scan_keys(scan, resolved))
    sample = (
        f"SELECT count(*), approx_count_distinct(hash({keys})) FROM "
        f"(SELECT * FROM {scan.relation} WHERE {pull.window(scan, resolved, micros(start), micros(end))} "
        f"LIMIT {SAMPLE_ROWS})"
    )
    with translate_errors(f"sampling '{view.name}'"):
        row = con.execute(sample).fetchone()
    sampled, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
    if sampled < SAMPLE_ROWS:  # the whole window was sampled
        return distinct
    return max(distinct, total * distinct // sampled)


def range_batches(
    con: duckdb.DuckDBPyConnection,
    scan: SourceScan,
    view: FeatureView,
    start: datetime,
    end: datetime,
    part: HashRange,
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    """The newest row per entity of ``part`` with ``start <= event_ts <= end``, as record batches.

    ``con`` is closed when the batches are exhausted (or the iterator is dropped).
    """
    start_us, end_us = micros(start), micros(end)
    ranged = not part.whole and bool(view.join_keys)
    where = None
    if is_computed(view) and view.udf is None and ranged:
        # aggregations group by the raw events' keys: compute only the range's entities
        events_where = range_condition(scan, view.resolve(scan.arrow_schema), part)
        scan, resolved = computed_scan(con, scan, view, start_us, end_us, where=events_where)
    elif is_computed(view):  # a udf may make its keys from any column: filter the computed rows
        scan, resolved = computed_scan(con, scan, view, start_us, end_us)
        where = range_condition(scan, resolved, part) if ranged else None
    else:
        resolved = check_view(scan, view)
        where = range_condition(scan, resolved, part) if ranged else None
    sql = pull.latest_sql(scan, resolved, start_us, end_us, where)
    with translate_errors(f"reading '{view.name}'"):
        reader = con.sql(sql).to_arrow_reader(batch_rows)
    return _batches(con, reader, view.name)


def _batches(con: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader, name: str) -> Iterator[pa.RecordBatch]:
    try:
        with translate_errors(f"reading '{name}'"):
            yield from reader
    finally:
        con.close()
