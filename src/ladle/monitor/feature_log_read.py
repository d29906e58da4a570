"""Reading a service's feature log back (``FeatureStore.get_feature_log``) through the offline store.

The log source is wrapped in a feature view (entities: the service's join keys; features: every
other log column) and read with the offline store's ``pull_all``, so every offline store that can
serve history can serve its logs. The view is also what to use for ``get_historical_features`` on
logs: :func:`log_view`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa

from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.definitions.refs import resolve
from ladle.monitor.feature_log import HasRegistry, _source_of
from ladle.monitor.feature_log_table import LOG_TIME, LogLayout
from ladle.offline.base import OfflineStore
from ladle.offline.sources import SourceLocation
from ladle.times import parse_time
from ladle.types import EVENT_TIMESTAMP, dtype_from_arrow


class FeatureStore(HasRegistry, Protocol):
    """What reading logs needs of a store: its definitions and its offline store."""

    @property
    def offline_store(self) -> OfflineStore:
        """The configured offline store."""
        ...


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)


def log_view(store: FeatureStore, service_name: str) -> FeatureView:
    """A feature view over the log of ``service_name`` (join keys as entities, log columns as features)."""
    snapshot = store.snapshot()
    service = snapshot.feature_service(service_name)
    layout = LogLayout.of(resolve(snapshot, service, True))
    keys = {name for name, _ in layout.keys}
    entities = [Entity(name=name, join_keys=[name], value_type=dtype_from_arrow(kind)) for name, kind in layout.keys]
    schema = [Field(name=f.name, dtype=dtype_from_arrow(f.type)) for f in layout.schema() if f.name not in keys]
    schema = [f for f in schema if f.name != LOG_TIME]
    return FeatureView(
        name=f"feature_log_{service_name}", source=_source_of(store.config, service), schema=schema, entities=entities
    )


def read_log(
    store: FeatureStore, service_name: str, start: datetime | str | None, end: datetime | str | None
) -> pa.Table:
    """Every log row with ``start <= log_time <= end`` (None: unbounded), ``log_time`` named as written."""
    view = log_view(store, service_name)
    source = view.batch_source
    if isinstance(source, FileSource) and not SourceLocation.of(source, store.config.repo_path).root.exists():
        return pa.table({})  # nothing logged yet: the writer creates the directory with the first file
    low = _EARLIEST if start is None else parse_time(start, "start") if isinstance(start, str) else start
    high = _LATEST if end is None else parse_time(end, "end") if isinstance(end, str) else end
    batches = list(store.offline_store.pull_all(view, low, high))
    if not batches:
        return pa.table({})
    table = pa.Table.from_batches(batches)
    names = [LOG_TIME if n == EVENT_TIMESTAMP else n for n in table.column_names]
    return table.rename_columns(names)
