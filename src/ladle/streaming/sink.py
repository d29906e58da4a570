"""Where ``ladle stream`` keeps a Kafka source's accepted events (rule 9), and which one a source gets.

Two sinks satisfy :class:`OfflineSink`:

* :class:`~ladle.streaming.offline_log.OfflineLog`: Parquet files in the batch source directory
  (a ``FileSource`` on the DuckDB offline store);
* :class:`~ladle.streaming.iceberg_log.IcebergLog`: appends to the Iceberg table backing the batch
  source (an ``IcebergSource``, or a named ``FileSource`` when ``offline_store.type`` is ``iceberg``).

The runner relies on the same contract from both: after :meth:`OfflineSink.write_all` returns,
the events are durable (the offsets may be committed); :meth:`OfflineSink.truncate_from` makes the
sink hold nothing of the partition at or past an offset (the events written but never committed),
so replaying from the committed offset stores every accepted event exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from ladle.definitions import IcebergSource, KafkaSource
from ladle.errors import ConfigError

if TYPE_CHECKING:
    from ladle.config import RepoConfig


class OfflineSink(Protocol):
    """The accepted events of one Kafka source, as the stream runner writes and reads them back."""

    @property
    def location(self) -> str:
        """Where the events go (a directory, or ``catalog:namespace.table``), for messages and clash checks."""
        ...

    @property
    def shared_by_topic(self) -> bool:
        """True when two sources may share the location if their topics differ (files are named by topic)."""
        ...

    def write_all(self, batches: Mapping[int, pa.Table]) -> None:
        """Store each partition's events (offset order) durably, all of them before returning."""
        ...

    def truncate_from(self, partition: int, start: int) -> int:
        """Remove the partition's events with offset ≥ ``start``; how much was removed (0: nothing)."""
        ...

    def read_recent(self, partition: int, lookback_us: int) -> pa.Table:
        """The partition's events with event time ≥ (its newest event time - ``lookback_us``), by offset."""
        ...

    def probe_writable(self) -> None:
        """Raise DataSourceError unless the sink can be written now (readiness)."""
        ...


def uses_iceberg(source: KafkaSource, config: RepoConfig) -> bool:
    """Whether the source's accepted events go to Iceberg: its batch source is an ``IcebergSource``, or
    the offline store is Iceberg (then a ``FileSource`` named ``X`` is the table ``<namespace>.X``)."""
    return isinstance(source.batch_source, IcebergSource) or getattr(config.offline_store, "type", "") == "iceberg"


def open_sink(source: KafkaSource, config: RepoConfig, repo_path: Path, schema: pa.Schema) -> OfflineSink:
    """The sink of ``source``'s accepted events (decoded ``schema``), chosen by its batch source and the
    offline store (see the module docstring)."""
    if not uses_iceberg(source, config):
        from ladle.streaming.offline_log import OfflineLog

        return OfflineLog(source, repo_path, schema)
    from ladle.offline.iceberg.catalog import IcebergOfflineStoreConfig
    from ladle.streaming.iceberg_log import IcebergLog

    block = config.offline_store
    if not isinstance(block, IcebergOfflineStoreConfig):
        raise ConfigError(
            f"kafka source '{source.name}' keeps its events in an iceberg source, but offline_store is "
            f"'{getattr(block, 'type', block)}'; set offline_store.type: iceberg (its catalog is the table's)"
        )
    return IcebergLog(source, block, repo_path, schema)
