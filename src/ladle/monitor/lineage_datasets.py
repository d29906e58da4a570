"""Which OpenLineage datasets a Ladle job reads and writes: namespaces naming the store, names the table.

Namespaces follow OpenLineage's naming conventions (spec ``Naming.md``) so that a receiver joins
Ladle's datasets with the same tables seen by other tools:

* a Parquet ``FileSource`` (duckdb/file offline store): namespace ``file``, name the absolute path;
* an Iceberg table: ``iceberg://<catalog name>``, name ``<namespace>.<table>``;
* the MySQL-protocol store: ``mysql://host:port`` (``doris://`` / ``starrocks://`` for those dialects),
  name ``<database>.<table>``;
* a Kafka topic: ``kafka://<bootstrap servers>``, name the topic;
* the online store: ``redis://host:port`` or ``sqlite://<absolute path>``, name ``<project>.<view>``;
* a training set written by ``to_parquet``: ``file``, the absolute path.

Every dataset carries its schema (fields and Ladle dtypes) from the feature view definition.
:class:`LineageRun` (one run of a job: id, datasets, facts) and the event constants live here too,
so that the emitter (:mod:`.lineage`) and the openlineage-python side (:mod:`.lineage_events`) share
them without importing each other.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladle.config import RepoConfig, resolve_path
from ladle.definitions import DataSource, FeatureView, FileSource, PushSource
from ladle.definitions.sources import DorisSource, IcebergSource, KafkaSource


@dataclass(frozen=True)
class LineageDataset:
    """One dataset of a run: where it lives, what it is called, its columns (name, type)."""

    namespace: str
    name: str
    fields: tuple[tuple[str, str], ...] = ()


#: ``producer`` of every event: which software wrote it (a URI, as the spec asks).
PRODUCER = "urn:ladle:0.1.0"
#: Where the Ladle run facet's JSON schema is described (shipped as ``lineage_facet.json``).
LADLE_FACET_SCHEMA = "urn:ladle:facets:LadleRunFacet:1-0-0"

#: Job type shown by receivers (``jobType`` facet), by Ladle job name.
JOB_TYPES: Mapping[str, tuple[str, str]] = {
    "apply": ("BATCH", "APPLY"),
    "ingest": ("BATCH", "INGEST"),
    "materialize": ("BATCH", "MATERIALIZATION"),
    "stream": ("STREAMING", "STREAM"),
    "push": ("STREAMING", "PUSH"),
    "get_historical_features": ("BATCH", "TRAINING_SET"),
}


class LineageRun:
    """One run of a job: its id, datasets and the facts that go into the Ladle facet."""

    def __init__(self, job: str, inputs: Iterable[LineageDataset], outputs: Iterable[LineageDataset]) -> None:
        self.job = job
        self.run_id = str(uuid.uuid4())
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        #: Ladle facet fields, e.g. ``rowsWritten``, ``watermark``, ``viewVersions``
        self.facts: dict[str, Any] = {}
        #: rows written per output dataset name (the ``outputStatistics`` facet)
        self.rows: dict[str, int] = {}

    def copy(self) -> LineageRun:
        """The run as it is now (its facts and row counts copied), for an event built later."""
        other = LineageRun.__new__(LineageRun)
        other.job, other.run_id, other.inputs, other.outputs = self.job, self.run_id, self.inputs, self.outputs
        other.facts, other.rows = dict(self.facts), dict(self.rows)
        return other


def error_text(error: BaseException) -> tuple[str, str]:
    """The message and the stack trace of a failed job, for the ``errorMessage`` facet."""
    message = f"{type(error).__name__}: {error}"
    return message, "".join(traceback.format_exception(error))


def view_fields(view: FeatureView) -> tuple[tuple[str, str], ...]:
    """The view's join keys and features with their Ladle dtypes (``Float64``, ``Array(String)``)."""
    fields = [(f.name, str(f.dtype)) for f in (*view.entity_columns, *view.features)]
    source = view.batch_source
    if source.timestamp_field:
        fields.append((source.timestamp_field, "UnixTimestamp"))
    return tuple(fields)


def _redis_address(block: Any) -> str:
    text = str(getattr(block, "connection_string", "localhost:6379"))
    if "://" in text:
        text = text.split("://", 1)[1].rsplit("@", maxsplit=1)[-1]
    first = text.split(",")[0].split("/")[0]
    return first if ":" in first else f"{first}:6379"


def online_namespace(config: RepoConfig) -> str:
    """The online store as a namespace: ``redis://host:port`` or ``sqlite:///abs/path.db``."""
    block = config.online_store
    kind = getattr(block, "type", "sqlite")
    if kind == "redis":
        return f"redis://{_redis_address(block)}"
    if kind == "sqlite":
        return f"sqlite://{resolve_path(config, str(getattr(block, 'path', 'data/online_store.db')))}"
    return f"{kind}://{config.project}"


def online_dataset(config: RepoConfig, view: FeatureView) -> LineageDataset:
    """The online table of ``view``."""
    return LineageDataset(online_namespace(config), f"{config.project}.{view.name}", view_fields(view))


def _mysql_namespace(block: Any) -> str:
    dialect = str(getattr(block, "type", "mysql"))
    port = getattr(block, "port", None) or (3306 if dialect == "mysql" else 9030)
    return f"{dialect}://{getattr(block, 'host', '127.0.0.1')}:{port}"


def source_location(config: RepoConfig, source: DataSource) -> tuple[str, str]:
    """``(namespace, name)`` of the table a batch, push or Kafka source's rows live in."""
    block = config.offline_store
    kind = str(getattr(block, "type", "duckdb"))
    if isinstance(source, PushSource):
        return source_location(config, source.batch_source)
    if isinstance(source, KafkaSource):
        return f"kafka://{source.kafka_bootstrap_servers.split(',')[0]}", str(source.topic)
    if kind == "iceberg":
        from ladle.offline.iceberg.catalog import table_ref

        ref = table_ref(source, block)
        return f"iceberg://{ref.catalog or getattr(block, 'catalog_name', 'ladle')}", ref.identifier
    if kind in ("doris", "starrocks", "mysql"):
        database = str(getattr(block, "database", ""))
        if isinstance(source, DorisSource):
            table = source.table or f"query:{source.name}"
            if "." not in table:
                table = f"{source.database or database}.{table}"
            return _mysql_namespace(block), table
        return _mysql_namespace(block), f"{database}.{source.name}"
    if isinstance(source, FileSource):
        return "file", str(resolve_path(config, source.path))
    if isinstance(source, IcebergSource):
        return f"iceberg://{source.catalog or 'ladle'}", source.table
    return f"ladle://{config.project}", source.name or source.kind


def offline_dataset(config: RepoConfig, view: FeatureView) -> LineageDataset:
    """The offline table feeding ``view`` (its batch source)."""
    source = view.batch_source
    try:
        namespace, name = source_location(config, source)
    except Exception:  # a source the store cannot place must not stop the job it describes
        namespace, name = f"ladle://{config.project}", source.name or view.name
    return LineageDataset(namespace, name, view_fields(view))


def stream_dataset(config: RepoConfig, view: FeatureView) -> LineageDataset | None:
    """The Kafka topic feeding a stream feature view, if it has one."""
    source = view.source
    if not isinstance(source, KafkaSource):
        return None
    namespace, name = source_location(config, source)
    return LineageDataset(namespace, name, view_fields(view))


def file_dataset(path: str | Path, fields: tuple[tuple[str, str], ...] = ()) -> LineageDataset:
    """A local file (a training set written to Parquet)."""
    return LineageDataset("file", str(Path(path).resolve()), fields)
