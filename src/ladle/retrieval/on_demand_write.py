"""``write_to_online_store=True``: on-demand outputs computed when their source view's rows are written.

Such an ODFV reads exactly one feature view and no request data (checked at apply). Whenever rows of
that view are written online (push, ``write_to_online_store``, materialization), the ODFV runs over
those rows and its outputs are written under its *stored view* (its name, the source view's
entities and ttl); reads then fetch the stored outputs like any view's, with no transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ladle.definitions import FeatureView, OnDemandFeatureView

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore
    from ladle.online.base import OnlineStore
    from ladle.registry.base import RegistrySnapshot


def writing_odfvs(snapshot: RegistrySnapshot, view_name: str | None = None) -> list[OnDemandFeatureView]:
    """The ODFVs with ``write_to_online_store`` (fed by ``view_name``, if given)."""
    return [
        o
        for o in snapshot.on_demand_feature_views.values()
        if o.write_to_online_store and (view_name is None or o.view_inputs[0].view_name == view_name)
    ]


def stored_views(snapshot: RegistrySnapshot) -> list[FeatureView]:
    """The stored views of every writing ODFV whose source view exists (apply prepares their storage)."""
    views = snapshot.feature_views
    return [o.stored_view(views) for o in writing_odfvs(snapshot) if o.view_inputs[0].view_name in views]


def derived_rows(odfv: OnDemandFeatureView, stored: FeatureView, rows: pa.Table) -> pa.Table:
    """The ODFV's outputs for ``rows`` (written rows of its source view), in the online write format."""
    n = rows.num_rows
    source = odfv.view_inputs[0]
    inputs: dict[str, Sequence[Any]] = {}
    for f in source.features:
        col = rows.column(f).to_pylist() if f in rows.column_names else [None] * n
        inputs[f] = inputs[f"{source.name_to_use}__{f}"] = col
    out = odfv.transform(inputs, n)
    columns: dict[str, Any] = {k: rows.column(k) for k in stored.join_keys}
    for fld in odfv.schema:
        columns[fld.name] = pa.array(out[fld.name], type=fld.dtype.arrow)
    for extra in ("event_timestamp", "created_timestamp"):
        if extra in rows.column_names:
            columns[extra] = rows.column(extra)
    return pa.table(columns)


def write_derived(snapshot: RegistrySnapshot, online_store: OnlineStore, view: FeatureView, rows: pa.Table) -> int:
    """Compute and write the outputs of every writing ODFV fed by ``view`` for its written ``rows``."""
    written = 0
    for odfv in writing_odfvs(snapshot, view.name):
        stored = odfv.stored_view(snapshot.feature_views)
        written += online_store.write(snapshot.project, stored, derived_rows(odfv, stored, rows))
    return written


def materialize_derived(
    snapshot: RegistrySnapshot,
    offline_store: OfflineStore,
    online_store: OnlineStore,
    view_names: Sequence[str],
    start: datetime,
    end: datetime,
) -> int:
    """After ``view_names`` were materialized over [start, end]: the same window's outputs of their
    writing ODFVs (the window's newest rows are read again from the offline store)."""
    written = 0
    for name in view_names:
        if not writing_odfvs(snapshot, name):
            continue
        view = snapshot.feature_view(name)
        for batch in offline_store.pull_latest(view, start, end):
            if batch.num_rows:
                written += write_derived(snapshot, online_store, view, pa.Table.from_batches([batch]))
    return written
