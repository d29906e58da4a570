"""The Apache Iceberg offline store (``offline_store: {type: iceberg}``); see docs/iceberg.md.

Sources are Iceberg tables (:func:`~ladle.offline.iceberg.catalog.table_ref`): an
``IcebergSource`` names its table, a ``FileSource`` named ``X`` is ``<namespace>.X``. Reads plan
the Iceberg scan with the entity-time window pushed down and join in DuckDB with the same SQL
and semantics as the DuckDB store (``ladle.offline.session``); writes are single Iceberg commits.

>>> job = store.historical(entity, "event_timestamp", selections, full_feature_names=False)
>>> job.snapshots                      # {"prices": 4182...}: what the job read
>>> store.historical(entity, "event_timestamp", selections, False, as_of=job.snapshots)  # the same rows
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, FeatureView, KafkaSource, PushSource
from ladle.definitions.refs import ViewSelection
from ladle.errors import DataSourceError, RequestError
from ladle.offline import ranges
from ladle.offline.base import AsOf
from ladle.offline.computed import is_computed
from ladle.offline.hashing import HashRange
from ladle.offline.iceberg import reads, writes
from ladle.offline.iceberg.catalog import Catalogs, IcebergOfflineStoreConfig, TableRef, table_ref
from ladle.offline.iceberg.reads import Pinned
from ladle.offline.iceberg.tables import load_table
from ladle.offline.job import DuckDBRetrievalJob
from ladle.offline.partitioned import PartitionedRetrievalJob, retrieval_budget
from ladle.offline.session import (
    DuckDBSession,
    check_batch_rows,
    check_entity_frame,
    historical_job,
    micros,
    pull_batches,
    rows_from,
)
from ladle.offline.sources import SourceScan

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


class IcebergRetrievalJob(DuckDBRetrievalJob):
    """A point-in-time join over Iceberg tables; ``snapshots`` says which snapshot of each source it read.

    ``snapshots`` maps source name → snapshot id (-1: the table had no snapshot, read as empty).
    Pass it back as ``as_of`` to take the same training set again.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, sql: str, entity: pa.Table, snapshots: Mapping[str, int]
    ) -> None:
        super().__init__(con, sql, entity)
        self.snapshots: dict[str, int] = dict(snapshots)

    def __repr__(self) -> str:
        return f"IcebergRetrievalJob(snapshots={self.snapshots})"


def _name(table: Table) -> str:
    return ".".join(table.name())


def _batch(source: DataSource) -> DataSource:
    return source.batch_source if isinstance(source, (PushSource, KafkaSource)) else source


def source_label(source: DataSource) -> str:
    """The key of a source in ``as_of`` mappings and ``job.snapshots``: its name (or its table)."""
    batch = _batch(source)
    return batch.name or str(getattr(batch, "table", "")) or repr(batch)


class IcebergOfflineStore:
    """Feature history in Iceberg tables (pyiceberg), joined by DuckDB."""

    config_class: ClassVar[type[StrictModel]] = IcebergOfflineStoreConfig

    def __init__(self, config: RepoConfig) -> None:
        self.repo_config = config
        block = config.offline_store
        self.config = block if isinstance(block, IcebergOfflineStoreConfig) else IcebergOfflineStoreConfig()
        self.catalogs = Catalogs(self.config, config.repo_path)
        self._session = DuckDBSession(self.config.memory_limit, self.config.threads, self.config.temp_directory)
        #: materialization pulls (``pull_latest``, range pulls) run in a database of their own, with fewer threads
        self._pull_session = DuckDBSession(
            self.config.memory_limit, ranges.pull_threads(self.config.threads), self.config.temp_directory
        )
        #: how the last scans were read, by source label ("direct", "arrow" or "empty"); for tests and docs
        self.last_read_paths: dict[str, str] = {}

    # -- tables -----------------------------------------------------------------------------------
    def _ref(self, source: DataSource) -> TableRef:
        return table_ref(source, self.config)

    def _table(self, source: DataSource) -> Table:
        """The source's table; DataSourceError naming it when it (or its namespace) does not exist."""
        ref = self._ref(source)
        catalog = self._catalog(ref)
        table = load_table(catalog, ref)
        if table is None:
            raise DataSourceError(
                f"source {source_label(source)!r}: iceberg table {ref} does not exist "
                "(push or ingest rows to create it, or create it in the catalog)"
            )
        return table

    def _catalog(self, ref: TableRef) -> Catalog:
        try:
            return self.catalogs.get(ref.catalog)
        except Exception as exc:
            raise DataSourceError(f"iceberg table {ref}: {exc}") from exc

    def _pin(self, source: DataSource, table: Table, as_of: AsOf | None) -> Pinned:
        label = source_label(source)
        if as_of is None:
            return Pinned(label, table, table.current_snapshot())
        if isinstance(as_of, datetime):
            moment = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
            snapshot = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
            if snapshot is None:
                first = min((s.timestamp_ms for s in table.snapshots()), default=None)
                since = (
                    f"its first snapshot is from {datetime.fromtimestamp(first / 1000, UTC).isoformat()}"
                    if first is not None
                    else "it has no snapshot at all"
                )
                raise RequestError(
                    f"as_of {moment.isoformat()}: source {label!r} (table {_name(table)}) had no snapshot then; {since}"
                )
            return Pinned(label, table, snapshot)
        if label not in as_of:
            raise RequestError(f"as_of names no snapshot for source {label!r} (it names {sorted(as_of)})")
        wanted = as_of[label]
        if isinstance(wanted, bool) or not isinstance(wanted, numbers.Integral):
            raise RequestError(f"as_of: the snapshot of source {label!r} must be an integer id, got {wanted!r}")
        wanted = int(wanted)
        if wanted == -1:
            return Pinned(label, table, None)
        snapshot = table.snapshot_by_id(wanted)
        if snapshot is None:
            raise RequestError(f"as_of: source {label!r} (table {_name(table)}) has no snapshot {wanted}")
        return Pinned(label, table, snapshot)

    def _scan(
        self,
        con: duckdb.DuckDBPyConnection,
        pinned: Pinned,
        view: FeatureView,
        lo_us: int | None,
        hi_us: int | None,
    ) -> SourceScan:
        scan, path = reads.open_scan(con, pinned, view.batch_source, view, lo_us, hi_us)
        self.last_read_paths[pinned.label] = path
        return scan

    # -- protocol ---------------------------------------------------------------------------------
    def source_schema(self, source: DataSource) -> pa.Schema:
        """The Arrow schema of the source's table (current schema, source column names)."""
        table = self._table(source)
        con = self._session.cursor()
        try:
            pinned = Pinned(source_label(source), table, table.current_snapshot())
            return reads.empty_scan(con, pinned.label, reads.columns_of(pinned), {}).arrow_schema
        finally:
            con.close()

    def pull_latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """The newest row per entity with ``start <= event_ts <= end``, in batches of at most ``batch_rows``."""
        return self._pull(view, start, end, batch_rows, latest=True)

    def pull_all(self, view: FeatureView, start: datetime, end: datetime) -> Iterator[pa.RecordBatch]:
        """Every row with ``start <= event_ts <= end``."""
        return self._pull(view, start, end, 100_000, latest=False)

    def estimate_entities(self, view: FeatureView, start: datetime, end: datetime) -> int:
        """A cheap estimate of the distinct entities in ``[start, end]``: the rows of the data files the
        scan plan (time window pushed down) selects, scaled by the distinct entities of a sample of the
        window when DuckDB reads the files directly (otherwise the row count, an upper bound)."""
        pinned = self._pinned(view)
        if pinned is None:
            return 0
        lo, hi = self._bounds(view, start, end)
        fields = reads.columns_of(pinned)
        source = view.batch_source
        ts = {dst: src for src, dst in source.field_mapping.items()}.get(source.timestamp_field, source.timestamp_field)
        tasks = reads.plan(pinned, reads.window_filter(pinned, ts, lo, hi))
        total = sum(task.file.record_count for task in tasks)
        if total <= ranges.SAMPLE_ROWS or reads.read_path(pinned, tasks, fields) != "direct":
            return total
        con = self._pull_session.cursor()
        try:
            mapping = {dst: src for src, dst in source.field_mapping.items()}
            scan = reads.direct_scan(con, pinned.label, tasks, fields, mapping)
            return ranges.estimate_entities(con, scan, view, start, end, total)
        finally:
            con.close()

    def pull_latest_range(
        self, view: FeatureView, start: datetime, end: datetime, part: HashRange, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """``pull_latest`` of the entities whose key hash falls in ``part`` (:mod:`ladle.offline.hashing`):
        the scan plan prunes files by the time window; DuckDB filters the planned files' rows by hash."""
        check_batch_rows(batch_rows)
        pinned = self._pinned(view)
        if pinned is None:
            return iter(())
        con = self._pull_session.cursor()
        try:
            scan = self._scan(con, pinned, view, *self._bounds(view, start, end))
        except BaseException:
            con.close()
            raise
        return ranges.range_batches(con, scan, view, start, end, part, batch_rows)

    def _pinned(self, view: FeatureView) -> Pinned | None:
        """The view's table at its current snapshot; None for a stream's table not created yet."""
        ref = self._ref(view.batch_source)
        table = load_table(self._catalog(ref), ref)
        if table is None:
            if isinstance(view.source, KafkaSource):  # the stream creates it at its first flush: nothing yet
                return None
            table = self._table(view.batch_source)  # raises DataSourceError naming the table
        return self._pin(view.batch_source, table, None)

    @staticmethod
    def _bounds(view: FeatureView, start: datetime, end: datetime) -> tuple[int, int]:
        """The event-time bounds (µs) of the rows a pull reads: a computed view's windows look back."""
        lo, hi = micros(start), micros(end)
        if is_computed(view):
            lo -= int(view.max_window.total_seconds() * 1_000_000) + 1
        return lo, hi

    def _pull(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int, latest: bool
    ) -> Iterator[pa.RecordBatch]:
        check_batch_rows(batch_rows)
        pinned = self._pinned(view)
        if pinned is None:
            return iter(())
        con = (self._pull_session if latest else self._session).cursor()
        scan = self._scan(con, pinned, view, *self._bounds(view, start, end))
        return pull_batches(con, scan, view, start, end, batch_rows, latest, wide=self._session.cursor)

    def historical(
        self,
        entity_df: pa.Table,
        timestamp_column: str,
        selections: Sequence[ViewSelection],
        full_feature_names: bool,
        as_of: AsOf | None = None,
    ) -> DuckDBRetrievalJob | PartitionedRetrievalJob:
        """Point-in-time join of ``entity_df`` with each selection (docs/offline.md), reading each table at
        its current snapshot, or as of ``as_of`` (an instant, or snapshot ids by source name)."""
        if as_of is not None and not isinstance(as_of, (datetime, Mapping)):
            raise RequestError(f"as_of must be a datetime or a mapping of source name to snapshot id, got {as_of!r}")
        check_entity_frame(entity_df, timestamp_column, selections, full_feature_names)
        tables: dict[TableRef, Table] = {}
        pins: dict[str, Pinned] = {}
        for sel in selections:  # every table is loaded, and pinned, once: before any data is read
            source = sel.view.batch_source
            ref = self._ref(source)
            if ref not in tables:
                tables[ref] = self._table(source)
            label = source_label(source)
            if label not in pins:
                pins[label] = self._pin(source, tables[ref], as_of)
        con = self._session.cursor()

        def scan_of(sel: ViewSelection, span: tuple[int, int]) -> SourceScan:
            view = sel.view
            lo = rows_from(view, span[0])
            if lo is not None and is_computed(view):
                lo -= int(view.max_window.total_seconds() * 1_000_000) + 1
            return self._scan(con, pins[source_label(view.batch_source)], view, lo, span[1])

        snapshots = {label: pinned.snapshot_id for label, pinned in pins.items()}
        return historical_job(
            con,
            entity_df,
            timestamp_column,
            selections,
            full_feature_names,
            scan_of,
            budget_bytes=retrieval_budget(self.repo_config),
            single=lambda c, sql, entity: IcebergRetrievalJob(c, sql, entity, snapshots),
            snapshots=snapshots,
        )

    def append(self, source: DataSource, rows: pa.Table) -> int:
        """Append rows (source column names) in one commit, creating or evolving the table;
        a retry of a recent append adds nothing and returns 0 (see :mod:`ladle.offline.iceberg.writes`)."""
        ref = self._ref(source)
        ts = _source_column(source, source_timestamp(source))
        return writes.append_rows(self._catalog(ref), ref, rows, ts, self.config.partition_by)

    def erase_rows(self, source: DataSource, keys: Mapping[str, object], dry_run: bool = False) -> int:
        """Delete the rows matching ``keys`` in one row-level delete commit (:class:`~ladle.offline.base.RowEraser`).

        Snapshots from before the delete still hold the rows until they are expired (docs/feature-logging.md).
        """
        from ladle.offline.iceberg.writes import erase_rows

        ref = self._ref(source)
        table = load_table(self._catalog(ref), ref)
        return 0 if table is None else erase_rows(table, keys, dry_run)

    def replace_window(self, source: DataSource, rows: pa.Table, start: datetime, end: datetime) -> int:
        """Replace the rows with ``start <= event_ts < end`` by ``rows`` in one commit (``ladle ingest``)."""
        ref = self._ref(source)
        ts = _source_column(source, source_timestamp(source))
        return writes.replace_window(
            self._catalog(ref),
            ref,
            rows,
            ts,
            _utc(start),
            _utc(end),
            self.config.partition_by,
        )

    def close(self) -> None:
        """Close the DuckDB database (jobs already created keep their own connection)."""
        self._session.close()
        self._pull_session.close()


def source_timestamp(source: DataSource) -> str:
    """The event-time column (view name) of a source or its batch source."""
    return _batch(source).timestamp_field or source.timestamp_field


def _source_column(source: DataSource, view_name: str) -> str:
    batch = _batch(source)
    inverse = {dst: src for src, dst in batch.field_mapping.items()}
    return inverse.get(view_name, view_name)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
