"""The embedded offline store: Parquet files queried by DuckDB (``offline_store: {type: duckdb}``).

``type: file`` (Feast's name for its local store) selects the same backend. Semantics, SQL and
memory behaviour are described in docs/offline.md.

>>> store = DuckDBOfflineStore(config)           # config.offline_store is a DuckDBOfflineStoreConfig
>>> job = store.historical(entity_table, "event_timestamp", selections, full_feature_names=False)
>>> job.to_parquet("training.parquet")
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, FeatureView
from ladle.definitions.refs import ViewSelection
from ladle.errors import RequestError
from ladle.offline import ranges
from ladle.offline.append import append_rows
from ladle.offline.base import AsOf
from ladle.offline.hashing import HashRange
from ladle.offline.job import DuckDBRetrievalJob
from ladle.offline.partitioned import PartitionedRetrievalJob, retrieval_budget
from ladle.offline.session import DuckDBSession, check_batch_rows, historical_job, pull_batches
from ladle.offline.sources import SourceScan, open_scan

if TYPE_CHECKING:
    import duckdb


class DuckDBOfflineStoreConfig(StrictModel):
    """``offline_store:`` block of the DuckDB (Parquet) offline store."""

    type: Literal["duckdb", "file"] = Field("duckdb", description="'duckdb' or Feast's 'file'; both select this store")
    memory_limit: str | None = Field(
        None, description="DuckDB memory limit, e.g. '1GB'; bigger joins spill to temp_directory. Default: DuckDB's"
    )
    threads: int | None = Field(None, gt=0, description="DuckDB worker threads; default: one per core")
    temp_directory: str | None = Field(
        None, description="where DuckDB spills when over memory_limit; default: <system temp>/ladle-duckdb-spill"
    )


class DuckDBOfflineStore:
    """History in Parquet files (a file, a directory or a glob per source), joined by DuckDB."""

    config_class: ClassVar[type[StrictModel]] = DuckDBOfflineStoreConfig

    def __init__(self, config: RepoConfig) -> None:
        self.repo_config = config
        block = config.offline_store
        self.config = block if isinstance(block, DuckDBOfflineStoreConfig) else DuckDBOfflineStoreConfig()
        self._session = DuckDBSession(self.config.memory_limit, self.config.threads, self.config.temp_directory)
        #: materialization pulls (``pull_latest``, range pulls) run in a database of their own, with fewer threads
        self._pull_session = DuckDBSession(
            self.config.memory_limit, ranges.pull_threads(self.config.threads), self.config.temp_directory
        )

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the shared in-memory database, in UTC (one per query or job)."""
        return self._session.cursor()

    def _scan(self, con: duckdb.DuckDBPyConnection, source: DataSource, allow_empty: bool = False) -> SourceScan:
        return open_scan(con, source, self.repo_config.repo_path, allow_empty=allow_empty)

    # -- protocol ---------------------------------------------------------------------------
    def source_schema(self, source: DataSource) -> pa.Schema:
        """The Arrow schema of a source's files (source column names); DataSourceError if unreadable."""
        con = self._cursor()
        try:
            return self._scan(con, source).arrow_schema
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

    def _pull(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int, latest: bool
    ) -> Iterator[pa.RecordBatch]:
        check_batch_rows(batch_rows)
        con = self._pull_session.cursor() if latest else self._cursor()
        scan = self._scan(con, view.batch_source, allow_empty=True)
        if not scan.files:
            return iter(())
        return pull_batches(con, scan, view, start, end, batch_rows, latest, wide=self._cursor)

    def estimate_entities(self, view: FeatureView, start: datetime, end: datetime) -> int:
        """A cheap estimate of the distinct entities in ``[start, end]``: the files' row counts (footers),
        scaled by the distinct entities of a sample of the window (:func:`ladle.offline.ranges.estimate_entities`)."""
        con = self._pull_session.cursor()
        try:
            scan = self._scan(con, view.batch_source, allow_empty=True)
            total = ranges.footer_rows(con, scan, view.name)
            return ranges.estimate_entities(con, scan, view, start, end, total) if total else 0
        finally:
            con.close()

    def pull_latest_range(
        self, view: FeatureView, start: datetime, end: datetime, part: HashRange, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """``pull_latest`` of the entities whose key hash falls in ``part`` (:mod:`ladle.offline.hashing`)."""
        check_batch_rows(batch_rows)
        con = self._pull_session.cursor()
        try:
            scan = self._scan(con, view.batch_source, allow_empty=True)
        except BaseException:
            con.close()
            raise
        if not scan.files:
            con.close()
            return iter(())
        return ranges.range_batches(con, scan, view, start, end, part, batch_rows)

    def historical(
        self,
        entity_df: pa.Table,
        timestamp_column: str,
        selections: Sequence[ViewSelection],
        full_feature_names: bool,
        as_of: AsOf | None = None,
    ) -> DuckDBRetrievalJob | PartitionedRetrievalJob:
        """Point-in-time join of ``entity_df`` with each selection (docs/offline.md).

        ``entity_df`` holds the join keys (under each selection's entity column names) and a
        timestamp column (any unit; naive = UTC) without nulls; extra columns pass through.
        Parquet files keep no snapshots: any ``as_of`` is a RequestError.
        """
        if as_of is not None:
            raise RequestError(
                "as_of needs an offline store that keeps snapshots (type: iceberg); "
                "the duckdb store reads Parquet files as they are now"
            )
        con = self._cursor()
        return historical_job(
            con,
            entity_df,
            timestamp_column,
            selections,
            full_feature_names,
            lambda sel, _span: self._scan(con, sel.view.batch_source),
            budget_bytes=retrieval_budget(self.repo_config),
            single=DuckDBRetrievalJob,
        )

    def append(self, source: DataSource, rows: pa.Table) -> int:
        """Add rows (source column names) as a new Parquet file; see :func:`ladle.offline.append.append_rows`."""
        con = self._cursor()
        try:
            return append_rows(con, source, self.repo_config.repo_path, rows)
        finally:
            con.close()

    def erase_rows(self, source: DataSource, keys: Mapping[str, object], dry_run: bool = False) -> int:
        """Rewrite the source's files without the rows matching ``keys`` (:class:`~ladle.offline.base.RowEraser`)."""
        from ladle.offline.erase_files import erase_file_rows

        return erase_file_rows(source, self.repo_config.repo_path, keys, dry_run)

    def close(self) -> None:
        """Close the DuckDB database (jobs already created keep their own connection)."""
        self._session.close()
        self._pull_session.close()
