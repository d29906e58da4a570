"""The façade's record keeping: saved datasets, validation references and drift baselines.

:class:`RecordMethods` is a base of :class:`~ladle.store.FeatureStore`; its methods are a few lines
each over ``ladle.retrieval.saved`` and ``ladle.monitor.baseline_*`` (docs/on-demand.md, "Saved
datasets"; docs/monitoring.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ladle.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ladle.definitions import FeatureService
    from ladle.definitions.saved_dataset import (
        SavedDataset,
        SavedDatasetFileStorage,
        Tolerances,
        ValidationReference,
    )
    from ladle.monitor.baseline import Baseline
    from ladle.offline.base import RetrievalJob
    from ladle.offline.validation import ValidationReport
    from ladle.retrieval.saved import RecordRegistry
    from ladle.store_core import StoreCore as _Store


def _records(store: _Store) -> RecordRegistry:
    from ladle.retrieval.saved import RecordRegistry

    registry = store.registry
    if not isinstance(registry, RecordRegistry):
        raise ConfigError("saved datasets need Ladle's SQL registry")
    return registry


class RecordMethods:
    """Saved datasets, validation references and drift baselines (a base of ``FeatureStore``)."""

    def create_saved_dataset(
        self: _Store,
        from_: RetrievalJob,
        name: str,
        storage: SavedDatasetFileStorage,
        tags: Mapping[str, str] | None = None,
        allow_overwrite: bool = False,
    ) -> SavedDataset:
        """Run ``from_`` (a job of this store's ``get_historical_features``), write its rows to
        ``storage`` and register them as saved dataset ``name``."""
        from ladle.retrieval.saved import create_saved_dataset

        table = from_.to_arrow()
        refs, full, keys, service = self._job_requests.get(id(from_), ([], False, [], None))
        request = (refs, full, [k for k in keys if k in table.column_names], service)
        records = _records(self)
        return create_saved_dataset(records, self.repo_path, table, name, storage, request, tags, allow_overwrite)

    def get_saved_dataset(self: _Store, name: str) -> SavedDataset:
        """The saved dataset called ``name`` (``.storage`` says where its rows are)."""
        from ladle.retrieval.saved import get_saved_dataset

        return get_saved_dataset(_records(self), name)

    def create_validation_reference(
        self: _Store,
        name: str,
        dataset_name: str,
        tolerances: Tolerances | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ValidationReference:
        """Profile saved dataset ``dataset_name`` and register the profile as reference ``name``."""
        from ladle.retrieval.saved import create_validation_reference

        return create_validation_reference(
            _records(self), self.repo_path, name, dataset_name, tolerances, description, tags
        )

    def get_validation_reference(self: _Store, name: str) -> ValidationReference:
        """The validation reference called ``name`` (pass it to ``job.to_df(validation_reference=...)``)."""
        from ladle.retrieval.saved import get_validation_reference

        return get_validation_reference(_records(self), name)

    def validate(self: _Store, data: Any, reference: ValidationReference | str) -> ValidationReport:
        """The report of ``data`` (a DataFrame, Arrow table or job) against a reference (or its name)."""
        from ladle.retrieval.saved import validate

        if isinstance(reference, str):
            reference = RecordMethods.get_validation_reference(self, reference)
        return validate(data, reference)

    def save_drift_baseline(
        self: _Store,
        job_or_frame: RetrievalJob | pd.DataFrame | pa.Table,
        name: str,
        features: Sequence[str] | FeatureService | str | None = None,
        **options: Any,
    ) -> Baseline:
        """Profile a training set and save it as drift baseline ``name`` (docs/monitoring.md).

        ``features`` (references or a feature service) says which columns are which features; without
        it, columns named ``view__feature`` are taken. ``options``: ``bins``, ``top_k``, ``sample_size``.
        """
        from ladle.monitor.baseline_store import BaselineStore
        from ladle.monitor.baseline_training import baseline_from_training

        baseline = baseline_from_training(self.snapshot(), job_or_frame, name, features, **options)
        baselines = BaselineStore.open(self.config.registry, self.project, self.repo_path)
        try:
            baselines.save(baseline)
        finally:
            baselines.close()
        return baseline
