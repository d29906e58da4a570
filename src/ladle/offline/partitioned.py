"""Historical retrieval in bounded memory: the point-in-time join in two stages, the heavy one by entity hash.

The one-query join (:func:`ladle.offline.pit.build_sql`) holds, in its ASOF join, every candidate
source row (entity id, event time, ordering key, row id: ~70-80 bytes a row measured with DuckDB's
sort and hash tables); at 10,000,000 source rows that is ~750 MB. When the sources would not fit
the memory budget (``materialization.memory_budget``, the budget of batch work in one process),
the join runs as :class:`PartitionedRetrievalJob`:

1. **Winners, per view, per entity-hash part.** The entity rows are cut into ``k`` parts by the hash
   of the view's join keys (:mod:`ladle.offline.hashing`, the buckets materialization and the Ray
   engine use), and the source is filtered to the same hash in its scan, so a part's ASOF join holds
   only its entities' rows. Each part yields (entity row number, winning row id): 16 bytes per
   entity row, kept in Arrow. Views are partitioned independently, each by its own keys and with
   its own ``k`` (from its source's row count), so a frame joining several entities works alike.
2. **Values, once.** One query fetches the winners' features by row id (one scan of the feature
   columns, whatever ``k``) and joins them to the entity rows, in the frame's row order. Its memory
   grows with the entity rows; beyond the budget it runs over ranges of rows, in order.

``to_parquet`` streams stage 2 into the file batch by batch (nothing is held but a batch);
``to_arrow``/``to_df`` necessarily hold the whole result (and ``to_df`` a pandas copy of it).
Stage 1's per-part rescans of the source read only the key and time columns; measured at W6
(docs/scaling.md) they cost less than DuckDB spilling the one-query join to disk.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from ladle.offline import pit
from ladle.offline.hashing import HashRange, range_sql
from ladle.offline.job import translate_errors
from ladle.offline.memory import release_engine_memory
from ladle.offline.sources import literal, quote

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from ladle.config import RepoConfig
    from ladle.definitions.saved_dataset import ValidationReference

#: Bytes the process holds before a retrieval's data (interpreter, libraries, the entity frame's
#: caller copy, DuckDB's scan buffers); the same reserve as materialization's.
RESERVED_BYTES = 320 * 2**20
#: Bytes the process holds per entity row whatever the cut (the prepared frame, stage 1's winners, the
#: result batches in flight): tests/unit/test_retrieval_memory.py's 400,000 rows kept a floor of
#: ~370-400 MB however many parts stage 1 had (8 parts: 367 MB, 12: 373 MB), ~60 MB above the reserve.
ENTITY_ROW_BYTES = 160
#: Working-set bytes of one candidate source row in a part's ASOF join, rounded up from measurements (W6:
#: ~70-80 with the scan buffers apart; tests/unit/test_retrieval_memory.py: 4 parts of 4,000,000 rows peaked
#: 6-22 MB over a 400 MB budget, 5 parts 20 MB under).
SOURCE_ROW_BYTES = 112
#: Working-set bytes of one entity row in the values stage, per output column (hash join, sort, scan
#: buffers; measured ~65 on 400,000 rows x 5 columns).
RESULT_CELL_BYTES = 64
#: Stage-1 parts at most per view (each rescans the key columns of the source).
MAX_PARTS = 64


@dataclass(frozen=True)
class Plan:
    """How a retrieval is cut: stage-1 parts per view and stage-2 row ranges."""

    parts: tuple[int, ...]
    row_ranges: int

    @property
    def single(self) -> bool:
        """Whether the one-query join fits (no cutting at all)."""
        return all(p <= 1 for p in self.parts) and self.row_ranges <= 1


def plan(source_rows: Sequence[int], entity_rows: int, columns: int, budget_bytes: int | None) -> Plan:
    """Parts per view from each source's (upper-bound) row count, and row ranges from the result size,
    so that one part's working set fits ``budget_bytes`` less :data:`RESERVED_BYTES` and the
    entity rows' share (:data:`ENTITY_ROW_BYTES` each)."""
    if budget_bytes is None:
        return Plan(tuple(1 for _ in source_rows), 1)
    usable = max(budget_bytes - RESERVED_BYTES - entity_rows * ENTITY_ROW_BYTES, 32 * 2**20)
    parts = tuple(min(MAX_PARTS, max(1, math.ceil(rows * SOURCE_ROW_BYTES / usable))) for rows in source_rows)
    ranges = max(1, math.ceil(entity_rows * columns * RESULT_CELL_BYTES / usable))
    return Plan(parts, ranges)


def entity_hash_keys(join: pit.ViewJoin) -> list[str]:
    """The join's entity-frame key columns (as ``e.<col>``), each cast to its key type (the hashing's)."""
    return [f"CAST(e.{quote(c)} AS {t})" for c, t in zip(join.entity_keys, join.key_types, strict=True)]


def part_of(join: pit.ViewJoin, part: HashRange) -> tuple[str, pit.ViewJoin]:
    """The entity-row condition and the join with its source filtered to ``part`` (the same hash)."""
    from ladle.offline.hashing import scan_keys

    source = range_sql(scan_keys(join.scan, join.view), part)
    if join.where:  # already cut (a Ray task's part): both conditions hold
        source = f"({join.where}) AND {source}"
    return range_sql(entity_hash_keys(join), part), dataclasses.replace(join, where=source)


def sub_parts(join: pit.ViewJoin, k: int) -> list[HashRange]:
    """The ``k`` stage-1 parts of ``join``'s entity rows: buckets ``p`` of ``hash % k``, or, when every entity row
    is already in one bucket ``b`` of ``hash % K`` (a Ray task's part, ``join.bucket``), the buckets
    ``b + K*j`` of ``hash % (K*k)``, which split that bucket in ``k`` (``hash % k`` alone would put all of a
    task's entities in one part when ``K`` and ``k`` share factors, and leave the others empty)."""
    cut = join.bucket
    if cut is None:
        return [HashRange(k, p, p + 1) for p in range(k)]
    return [HashRange(cut.buckets * k, cut.lo + cut.buckets * j, cut.lo + cut.buckets * j + 1) for j in range(k)]


def winners(
    con: duckdb.DuckDBPyConnection, join: pit.ViewJoin, entity: str, t_min: int, t_max: int, part: HashRange | None
) -> pa.Table:
    """Stage 1 for one view (and one hash part, or all entity rows): (``__ladle_row``, ``__rid``) of the
    entity rows of relation ``entity`` that have a winner."""
    relation = entity
    if part is not None and not part.whole:
        condition, join = part_of(join, part)
        relation = f"(SELECT * FROM {entity} AS e WHERE {condition})"
    with translate_errors("historical retrieval"):
        table: pa.Table = con.sql(pit.hits_sql(join, t_min, t_max, relation)).to_arrow_table()
    return table


class PartitionedRetrievalJob:
    """A historical retrieval run in two stages within a memory budget (see the module docstring).

    Built like :class:`~ladle.offline.job.DuckDBRetrievalJob` (the sources' files are fixed when the
    job is created); runs on each call to :meth:`to_arrow`, :meth:`to_df` or :meth:`to_parquet`.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        entity: pa.Table,
        columns: Sequence[str],
        joins: Sequence[pit.ViewJoin],
        span: tuple[int, int],
        cut: Plan,
        snapshots: Mapping[str, int] | None = None,
    ) -> None:
        self._con = con
        self._entity = entity  # the prepared frame (row number, row time), registered as __ladle_entity
        self._columns = list(columns)
        self._joins = list(joins)
        self._span = span
        self.plan = cut
        self._lock = threading.Lock()
        self.snapshots: dict[str, int] = dict(snapshots or {})
        # the stages order their own results: insertion order is not needed (less memory, more parallel)
        con.execute("SET SESSION preserve_insertion_order = false").fetchall()
        con.register(pit.ENTITY, entity)

    @property
    def sql(self) -> str:
        """The equivalent one-query join (what each part runs is this, cut by entity hash)."""
        return pit.build_sql(self._columns, self._joins, *self._span)

    def _stage1(self) -> list[str]:
        """Every view's winners, registered in the connection; their relation names."""
        names = []
        entity = quote(pit.ENTITY)
        for n, (join, k) in enumerate(zip(self._joins, self.plan.parts, strict=True)):
            # a view without entities has one (every row matches it): nothing to cut
            parts: list[HashRange | None] = list(sub_parts(join, k)) if k > 1 and join.entity_keys else [None]
            tables = [winners(self._con, join, entity, *self._span, part) for part in parts]
            name = f"__ladle_hits{n}_{uuid.uuid4().hex[:8]}"
            self._con.register(name, pa.concat_tables(tables) if len(tables) > 1 else tables[0])
            names.append(name)
        release_engine_memory()  # the joins' freed hash tables, before stage 2 and the result's copies
        return names

    def _batches(self, batch_rows: int = 131_072) -> Iterator[pa.RecordBatch]:
        """Stage 2, range by range, in row order (stage 1 runs first)."""
        hits = self._stage1()
        try:
            rows = self._entity.num_rows
            width = math.ceil(rows / self.plan.row_ranges)
            joins = [dataclasses.replace(j, where="") for j in self._joins]
            for lo in range(0, rows, width):
                rows_in = f"WHERE {pit.ROW} BETWEEN {lo} AND {lo + width - 1}"
                entity = f"(SELECT * FROM {quote(pit.ENTITY)} {rows_in})"
                hit_rel = [f"(SELECT * FROM {quote(h)} {rows_in})" for h in hits]
                if self.plan.row_ranges <= 1:
                    entity, hit_rel = quote(pit.ENTITY), [quote(h) for h in hits]
                sql = pit.values_sql(self._columns, joins, hit_rel, *self._span, entity)
                with translate_errors("historical retrieval"):
                    reader = self._con.sql(sql).to_arrow_reader(batch_rows)
                    yield from reader
        finally:
            for name in hits:
                self._con.unregister(name)
            release_engine_memory()

    def to_arrow(self) -> pa.Table:
        """Run and return the result as an Arrow table (held whole: use :meth:`to_parquet` to stream)."""
        with self._lock:
            batches = list(self._batches())
        if not batches:  # pragma: no cover - the frame is never empty
            raise AssertionError("no result batches")
        return pa.Table.from_batches(batches)

    def to_df(self, validation_reference: ValidationReference | None = None) -> pd.DataFrame:
        """Run and return the result as a pandas DataFrame (checked against ``validation_reference``, if given:
        ValidationFailed when it does not match)."""
        from ladle.offline.validation import check

        # each column's Arrow buffers are freed as soon as it is converted: the result is not held twice
        frame: pd.DataFrame = self.to_arrow().to_pandas(split_blocks=True, self_destruct=True)
        release_engine_memory()
        return check(frame, validation_reference)

    def to_parquet(self, path: str | Path) -> None:
        """Stream the result into a Parquet file, batch by batch (a temp file, then renamed)."""
        self._write(Path(path), _ParquetSink)

    def to_csv(self, path: str | Path) -> None:
        """Stream the result into a CSV file with a header row."""
        self._write(Path(path), _CsvSink)

    def _write(self, path: Path, sink: Callable[[Path, pa.Schema], _Sink]) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with self._lock:
                writer: _Sink | None = None
                try:
                    for batch in self._batches():
                        if writer is None:
                            writer = sink(tmp, batch.schema)
                        writer.write_batch(batch)
                finally:
                    if writer is not None:
                        writer.close()
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"PartitionedRetrievalJob(rows={self._entity.num_rows}, parts={list(self.plan.parts)})"


class _Sink:
    def write_batch(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _ParquetSink(_Sink):
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self._writer = pq.ParquetWriter(path, schema)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


class _CsvSink(_Sink):
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        import pyarrow.csv as pacsv

        self._writer = pacsv.CSVWriter(str(path), schema)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


def source_rows(con: duckdb.DuckDBPyConnection, join: pit.ViewJoin) -> int:
    """An upper bound of the join's source rows: Parquet footers, or a registered table's row count."""
    scan = join.scan
    if scan.table:
        sql = f"SELECT count(*) FROM {scan.relation}"
    elif scan.files:
        sql = f"SELECT sum(num_rows)::BIGINT FROM parquet_file_metadata([{', '.join(literal(f) for f in scan.files)}])"
    else:
        return 0
    with translate_errors(f"reading the row counts of '{join.view.name}'"):
        rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def retrieval_budget(config: RepoConfig) -> int:
    """The memory budget of a historical retrieval: ``materialization.memory_budget`` (the budget of
    batch work in one process, retrieval included)."""
    from ladle.config import parse_size

    return parse_size(config.materialization.memory_budget)
