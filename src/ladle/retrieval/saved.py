"""Saved datasets and validation references: create, read back, validate (the FeatureStore methods' bodies).

Objects are written with :meth:`Registry.apply_changes` (so they are versioned like every object)
under the kinds in :data:`ladle.registry.base.RECORD_KINDS`; the registry's ``records`` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ladle.definitions.saved_dataset import SavedDataset, SavedDatasetFileStorage, Tolerances, ValidationReference
from ladle.errors import ConflictError, DefinitionError, ObjectNotFoundError, RequestError
from ladle.offline.validation import ValidationReport, profile_frame, validate_frame
from ladle.registry.base import ObjectChange
from ladle.types import EVENT_TIMESTAMP

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ladle.offline.base import RetrievalJob
    from ladle.registry.base import Kind, RegistrySnapshot


@runtime_checkable
class RecordRegistry(Protocol):
    """What saved datasets need of a registry (:class:`~ladle.registry.sql.SqlRegistry` is one)."""

    project: str

    def records(self, kind: Kind) -> dict[str, Any]:
        """``{name: spec}`` of a record kind."""
        ...

    def apply_changes(
        self, changes: Sequence[ObjectChange], *, expected_version: int | None, applied_by: str | None = None
    ) -> RegistrySnapshot:
        """Write changes in one transaction."""
        ...


class SavedDatasetNotFoundError(ObjectNotFoundError):
    """No saved dataset by that name."""

    kind = "saved dataset"


class ValidationReferenceNotFoundError(ObjectNotFoundError):
    """No validation reference by that name."""

    kind = "validation reference"


def storage_path(repo_path: Path, storage: SavedDatasetFileStorage) -> Path:
    """The storage's file, relative paths taken from the repo."""
    path = Path(storage.path)
    return path if path.is_absolute() else repo_path / path


def create_saved_dataset(
    registry: RecordRegistry,
    repo_path: Path,
    table: pa.Table,
    name: str,
    storage: SavedDatasetFileStorage,
    request: tuple[Sequence[str], bool, Sequence[str], str | None],
    tags: Mapping[str, str] | None,
    allow_overwrite: bool,
) -> SavedDataset:
    """Write ``table`` to ``storage`` and register it (``request``: features, full names, join keys, service)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not isinstance(storage, SavedDatasetFileStorage):
        raise DefinitionError("storage must be a SavedDatasetFileStorage(path=...)")
    if name in registry.records("saved_dataset") and not allow_overwrite:
        raise ConflictError(f"saved dataset '{name}' exists; pass allow_overwrite=True to replace it")
    features, full, join_keys, service = request
    low = high = None
    if EVENT_TIMESTAMP in table.column_names and table.num_rows:
        bounds = pc.min_max(table.column(EVENT_TIMESTAMP))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
    dataset = SavedDataset(
        name=name, features=tuple(features), join_keys=tuple(join_keys), storage=storage, full_feature_names=full,
        feature_service_name=service, min_event_timestamp=low, max_event_timestamp=high, row_count=table.num_rows,
        tags=dict(tags or {}),
    )  # fmt: skip
    path = storage_path(repo_path, storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    registry.apply_changes([ObjectChange("saved_dataset", name, dataset.to_spec())], expected_version=None)
    return dataset


def get_saved_dataset(registry: RecordRegistry, name: str) -> SavedDataset:
    """The saved dataset called ``name``."""
    spec = registry.records("saved_dataset").get(name)
    if spec is None:
        raise SavedDatasetNotFoundError(name, registry.project)
    return SavedDataset.from_spec(spec)


def read_saved_dataset(repo_path: Path, dataset: SavedDataset) -> pd.DataFrame:
    """The saved rows as pandas."""
    import pyarrow.parquet as pq

    path = storage_path(repo_path, dataset.storage)
    if not path.exists():  # a file, or a directory of Parquet parts (as Feast writes for a path without .parquet)
        raise RequestError(f"saved dataset '{dataset.name}': its file {path} is missing")
    frame: pd.DataFrame = pq.read_table(path).to_pandas()
    return frame


def create_validation_reference(
    registry: RecordRegistry,
    repo_path: Path,
    name: str,
    dataset_name: str,
    tolerances: Tolerances | None,
    description: str,
    tags: Mapping[str, str] | None,
) -> ValidationReference:
    """Profile a saved dataset and register the profile with its tolerances."""
    dataset = get_saved_dataset(registry, dataset_name)
    frame = read_saved_dataset(repo_path, dataset)
    profiled = [c for c in frame.columns if c != EVENT_TIMESTAMP]
    reference = ValidationReference(
        name=name, dataset_name=dataset_name, profile=profile_frame(frame[profiled]),
        tolerances=tolerances or Tolerances(), description=description, tags=dict(tags or {}),
    )  # fmt: skip
    registry.apply_changes([ObjectChange("validation_reference", name, reference.to_spec())], expected_version=None)
    return reference


def get_validation_reference(registry: RecordRegistry, name: str) -> ValidationReference:
    """The validation reference called ``name``."""
    spec = registry.records("validation_reference").get(name)
    if spec is None:
        raise ValidationReferenceNotFoundError(name, registry.project)
    return ValidationReference.from_spec(spec)


def validate(data: Any, reference: ValidationReference) -> ValidationReport:
    """The report of ``data`` (a DataFrame, an Arrow table or a retrieval job) against ``reference``."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
    elif hasattr(data, "to_pandas"):
        frame = data.to_pandas()
    elif hasattr(data, "to_df"):
        frame = data.to_df()
    else:
        raise RequestError(f"validate takes a DataFrame, an Arrow table or a retrieval job, got {type(data).__name__}")
    return validate_frame(frame, reference)


def saved_job(job: RetrievalJob) -> pa.Table:
    """The rows of ``job`` (run once)."""
    return job.to_arrow()
