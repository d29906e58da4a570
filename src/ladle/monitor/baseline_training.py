"""Taking a drift baseline from a training set: which column is which feature, then profile it.

Used by :meth:`ladle.store.FeatureStore.save_drift_baseline` and ``ladle monitor baseline``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ladle.definitions import FeatureService
from ladle.definitions.refs import Catalog, resolve
from ladle.errors import RequestError
from ladle.monitor.baseline import Baseline, build_baseline


def baseline_from_training(
    catalog: Catalog,
    training: Any,
    name: str,
    features: Sequence[str] | FeatureService | str | None = None,
    **options: Any,
) -> Baseline:
    """Profile ``training`` (a DataFrame, an Arrow table or a retrieval job) as baseline ``name``.

    ``options``: ``bins``, ``top_k``, ``sample_size`` of :func:`ladle.monitor.baseline.build_baseline`.
    """
    table = as_table(training)
    columns = baseline_columns(catalog, table, features)
    source: dict[str, Any] = {"columns": dict(columns)}
    if isinstance(features, (FeatureService, str)):
        source["feature_service"] = features.name if isinstance(features, FeatureService) else features
    return build_baseline(name, table, columns, source=source, **options)


def as_table(training: Any) -> pa.Table:
    """``training`` as an Arrow table (a retrieval job is run)."""
    if isinstance(training, pa.Table):
        return training
    to_arrow = getattr(training, "to_arrow", None)
    if callable(to_arrow):
        table = to_arrow()
        if isinstance(table, pa.Table):
            return table
    import pandas as pd

    if isinstance(training, pd.DataFrame):
        return pa.Table.from_pandas(training, preserve_index=False)
    raise RequestError(
        f"a baseline is taken from a pandas DataFrame, an Arrow table or a retrieval job, not {type(training).__name__}"
    )


def baseline_columns(
    catalog: Catalog, table: pa.Table, features: Sequence[str] | FeatureService | str | None
) -> dict[str, str]:
    """Which column of a training set holds which ``view:feature``.

    With ``features`` (references or a feature service) each selected feature is looked up under
    its full name (``prefix__feature``) and then its bare name; without, columns named
    ``view__feature`` after a registered view's feature are taken.
    """
    out: dict[str, str] = {}
    if features is None:
        for column in table.column_names:
            view_name, sep, feature = column.partition("__")
            view = catalog.feature_views.get(view_name)
            if sep and view is not None and feature in view.feature_names:
                out[column] = f"{view_name}:{feature}"
        if not out:
            raise RequestError(
                "cannot tell which columns are features: pass features=[...] or a feature service, or take the "
                "training set with full_feature_names=True"
            )
        return out
    for sel in resolve(catalog, features):
        for feature in sel.features:
            for column in (f"{sel.prefix}__{feature}", feature):
                if column in table.column_names:
                    out[column] = f"{sel.view.name}:{feature}"
                    break
            else:
                raise RequestError(f"the training set has no column for '{sel.view.name}:{feature}'")
    return out
