"""Feast saved datasets onto Ladle's :class:`~ladle.definitions.saved_dataset.SavedDataset` records.

A Feast ``SavedDataset`` keeps what produced a training set (feature references, join keys,
``full_feature_names``, the feature service), its tags, its event-time range (``meta``) and where
its rows are. Ladle's saved datasets are Parquet files, so only Feast's file storage in Parquet
maps; a warehouse table (BigQuery, Snowflake, ...), a Delta table or a remote URI is reported with
its reason. Feast writes a directory of Parquet parts when the path does not end in ``.parquet``;
that imports too (Ladle reads the directory as one table). Feast does not record a row count: the
importer reads it from the Parquet footers when the file is there (else 0).

Validation references are never imported: Feast stores their Great Expectations profiler as
pickled Python (dill), which Ladle will not unpickle and run; see :data:`VALIDATION_REFERENCE_REASON`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ladle.definitions.saved_dataset import SavedDataset, SavedDatasetFileStorage
from ladle.errors import DefinitionError
from ladle.feast_import.mapping import Unmapped
from ladle.registry.base import ObjectChange
from ladle.retrieval.saved import storage_path

KIND = "saved dataset"
#: The report's reason for every Feast validation reference.
VALIDATION_REFERENCE_REASON = (
    "Feast keeps its Great Expectations profiler as pickled Python, which Ladle does not "
    "unpickle or run; make a reference from the imported saved dataset with "
    "FeatureStore.create_validation_reference(name, dataset_name)"
)


def _timestamp(holder: Any, field: str) -> datetime | None:
    if not holder.HasField(field):
        return None
    value = getattr(holder, field)
    if value.seconds == 0 and value.nanos == 0:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def _storage(name: str, spec: Any) -> SavedDatasetFileStorage:
    which = spec.storage.WhichOneof("kind") if spec.HasField("storage") else None
    if which is None:
        raise Unmapped(KIND, name, "it names no storage")
    if which != "file_storage":
        where = which.removesuffix("_storage")
        raise Unmapped(KIND, name, f"its rows are in {where} storage; Ladle's saved datasets are local Parquet files")
    options = spec.storage.file_storage
    if options.file_format.WhichOneof("format") == "delta_format":
        raise Unmapped(KIND, name, "its rows are a Delta table; Ladle's saved datasets are Parquet files")
    uri = options.uri.removeprefix("file://")
    if not uri:
        raise Unmapped(KIND, name, "its file storage has no path")
    if "://" in uri or options.s3_endpoint_override:
        raise Unmapped(KIND, name, f"its file {uri} is remote; copy it to a local path first")
    return SavedDatasetFileStorage(uri)


def saved_dataset_from_proto(message: Any) -> SavedDataset:
    """Map one Feast ``SavedDataset`` message; raises :class:`Unmapped` with the reason if it cannot be."""
    spec = message.spec
    storage = _storage(spec.name, spec)
    meta = message.meta if message.HasField("meta") else None
    try:
        return SavedDataset(
            name=spec.name,
            features=tuple(spec.features),
            join_keys=tuple(spec.join_keys),
            storage=storage,
            full_feature_names=spec.full_feature_names,
            feature_service_name=spec.feature_service_name or None,
            min_event_timestamp=None if meta is None else _timestamp(meta, "min_event_timestamp"),
            max_event_timestamp=None if meta is None else _timestamp(meta, "max_event_timestamp"),
            tags=dict(spec.tags),
        )
    except DefinitionError as exc:
        raise Unmapped(KIND, spec.name, str(exc)) from None


def with_row_counts(datasets: Iterable[SavedDataset], repo_path: Path) -> list[SavedDataset]:
    """The datasets with ``row_count`` read from their Parquet footers (where the file or directory is there)."""
    import pyarrow.dataset as ds

    out = []
    for dataset in datasets:
        counted = dataset
        path = storage_path(repo_path, dataset.storage)
        # not readable as Parquet: the count stays 0 and reading its rows will say why
        with contextlib.suppress(OSError, ValueError):
            if path.exists():  # a file, or a directory of parts (Feast writes one for a path without .parquet)
                rows = ds.dataset(path, format="parquet").count_rows()
                counted = dataclasses.replace(dataset, row_count=rows)
        out.append(counted)
    return out


def dataset_changes(datasets: Iterable[SavedDataset]) -> list[ObjectChange]:
    """The registry writes of the datasets (record kind ``saved_dataset``)."""
    return [ObjectChange("saved_dataset", d.name, d.to_spec()) for d in datasets]


def rebase_storage(message: Any, base: Path) -> None:
    """Make a relative file-storage path of a Feast saved dataset absolute against ``base``."""
    spec = message.spec
    if spec.HasField("storage") and spec.storage.WhichOneof("kind") == "file_storage":
        options = spec.storage.file_storage
        if options.uri and "://" not in options.uri and not Path(options.uri).is_absolute():
            options.uri = str((base / options.uri).resolve())
