"""The offline store protocol, in Arrow and domain types.

A backend is a class with a ``config_class`` (pydantic model with a literal ``type``), built as
``Backend(config: RepoConfig)``, registered under the ``ladle.offline_stores`` entry point group.

Column naming: results use the view's join key names, feature names (after the source's
``field_mapping``), and the canonical ``event_timestamp`` / ``created_timestamp`` columns
(:data:`ladle.types.EVENT_TIMESTAMP`, :data:`ladle.types.CREATED_TIMESTAMP`), timestamp[us, UTC].
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

import pyarrow as pa

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, FeatureView
from ladle.definitions.refs import ViewSelection

if TYPE_CHECKING:
    import pandas as pd

    from ladle.definitions.saved_dataset import ValidationReference


#: What a training set is taken "as of" (time travel, docs/offline.md "Time travel"): an instant
#: (each table as its newest snapshot committed at or before it), or snapshot ids by source name
#: (exactly the snapshots a retrieval read before: ``job.snapshots``). Stores that keep no
#: snapshots refuse any ``as_of`` with a :class:`~ladle.errors.RequestError`.
AsOf = datetime | Mapping[str, int]


class RetrievalJob(Protocol):
    """A (lazy) historical retrieval.

    ``snapshots``: the snapshot id of each source it reads, by source name (Iceberg); empty on
    stores that keep no snapshots. Pass it back as ``as_of`` to take the same training set again.
    """

    snapshots: Mapping[str, int]

    def to_arrow(self) -> pa.Table:
        """Run and return the result as an Arrow table."""
        ...

    def to_df(self, validation_reference: ValidationReference | None = None) -> pd.DataFrame:
        """Run and return the result as a pandas DataFrame; with ``validation_reference``, raise
        :class:`~ladle.errors.ValidationFailed` if it does not match the reference's profile."""
        ...

    def to_parquet(self, path: str | Path) -> None:
        """Run and write the result to a Parquet file without materializing it in pandas."""
        ...

    @property
    def sql(self) -> str:
        """The query this job runs, for debugging."""
        ...


@runtime_checkable
class OfflineStore(Protocol):
    """History of feature rows, for training and materialization."""

    config_class: ClassVar[type[StrictModel]]

    def source_schema(self, source: DataSource) -> pa.Schema:
        """The Arrow schema of a source; :class:`~ladle.errors.DataSourceError` if unreadable."""
        ...

    def pull_latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """The newest row per entity with ``start <= event_ts <= end`` (created ts breaks ties)."""
        ...

    def pull_all(self, view: FeatureView, start: datetime, end: datetime) -> Iterator[pa.RecordBatch]:
        """Every row with ``start <= event_ts <= end``."""
        ...

    def historical(
        self,
        entity_df: pa.Table,
        timestamp_column: str,
        selections: Sequence[ViewSelection],
        full_feature_names: bool,
        as_of: AsOf | None = None,
    ) -> RetrievalJob:
        """Point-in-time join of ``entity_df`` with each selection (see docs/offline.md).

        ``as_of`` reads each source as it was then (time travel); None reads the current data.
        """
        ...

    def append(self, source: DataSource, rows: pa.Table) -> int:
        """Append rows (source column names) to a source; return the number appended."""
        ...


@runtime_checkable
class WindowReplacer(Protocol):
    """Optional capability: replace a source's rows in an event-time window in one commit.

    ``ladle ingest`` uses it when the offline store has it (Iceberg, Doris), so re-running a
    window replaces what the last run wrote instead of adding to it; otherwise it writes Parquet
    partitions itself (``ladle.ingest.partitions``).
    """

    def replace_window(self, source: DataSource, rows: pa.Table, start: datetime, end: datetime) -> int:
        """Atomically replace the rows with ``start <= event_ts < end`` by ``rows``; return ``rows.num_rows``."""
        ...


@runtime_checkable
class RowEraser(Protocol):
    """Optional capability: delete every row of one entity from a source (``ladle erase``).

    ``keys`` maps source column names to one value each; rows where every one of those columns equals
    its value are removed (Parquet: each file holding such rows is rewritten without them, atomically
    per file; Iceberg: one row-level delete commit; MySQL protocol: one DELETE).
    """

    def erase_rows(self, source: DataSource, keys: Mapping[str, object], dry_run: bool = False) -> int:
        """Delete the matching rows (with ``dry_run``, only count them); return how many."""
        ...


def open_offline_store(config: RepoConfig) -> OfflineStore:
    """Build the offline store named by ``config.offline_store.type``."""
    from ladle.plugins import load_backend

    backend = load_backend("ladle.offline_stores", config.offline_store.type)
    store: OfflineStore = backend(config)
    return store
