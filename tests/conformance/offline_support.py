"""Building blocks of the offline conformance cases: source tables, views, calls, a reference join.

Times are minutes after :data:`T0` (an hour before New York's 2024 change to summer time, so a
wrong zone conversion shifts answers by a different amount on either side of it).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ladle import Entity, FeatureService, FeatureView, Field, Float64, ValueType
from ladle.definitions import DataSource
from ladle.definitions.refs import FeatureRequest, ViewSelection
from ladle.offline.base import OfflineStore
from ladle.registry.base import RegistrySnapshot
from ladle.retrieval.historical import EntityFrame, historical_job
from ladle.types import DType

from .offline_backends import OfflineSetup, SourceTable

T0 = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
US = 1 / 60_000_000  # one microsecond, in minutes
FAR_PAST, FAR_FUTURE = datetime(1971, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)

commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)
market = Entity(name="market", join_keys=["market_id"], value_type=ValueType.INT64)


def at(minutes: float) -> datetime:
    """``T0`` plus ``minutes``."""
    return T0 + timedelta(minutes=minutes)


def stamps(minutes: Sequence[float | None], arrow_type: pa.DataType = TS) -> pa.Array:
    """Instants ``at(m)`` (None stays null) as ``arrow_type``; a naive type holds the UTC wall clock."""
    return pa.array([None if m is None else at(m) for m in minutes], TS).cast(arrow_type)


def feature_rows(
    keys: Mapping[str, Sequence[Any]],
    event: Sequence[float],
    values: Mapping[str, Sequence[Any]],
    created: Sequence[float | None] | None = None,
    event_type: pa.DataType = TS,
    created_type: pa.DataType = TS,
) -> SourceTable:
    """A source table: keys, ``event_ts`` (and ``created``) in minutes after T0, feature values."""
    columns: dict[str, pa.Array] = {k: pa.array(list(v)) for k, v in keys.items()}
    columns["event_ts"] = stamps(event, event_type)
    if created is not None:
        columns["created"] = stamps(created, created_type)
    columns.update({k: pa.array(list(v)) for k, v in values.items()})
    return SourceTable(pa.table(columns), "event_ts", "created" if created is not None else "")


def make_view(
    source: DataSource,
    name: str,
    entities: Sequence[Entity] = (commodity,),
    features: Sequence[str | tuple[str, DType]] = ("price",),
    ttl: timedelta = timedelta(0),
) -> FeatureView:
    """A view over ``source``; features named alone are Float64."""
    schema = [Field(name=f, dtype=Float64) if isinstance(f, str) else Field(name=f[0], dtype=f[1]) for f in features]
    return FeatureView(name=name, source=source, entities=list(entities), schema=schema, ttl=ttl)


def select(
    view: FeatureView, *features: str, prefix: str = "", join_key_map: Mapping[str, str] | None = None
) -> ViewSelection:
    """What the SDK hands the store for ``view`` (all features if none named)."""
    return ViewSelection(view, tuple(features or view.feature_names), prefix or view.name, dict(join_key_map or {}))


def entity_rows(
    keys: Mapping[str, Sequence[Any]], minutes: Sequence[float], ts_type: pa.DataType = TS, **extra: Sequence[Any]
) -> pa.Table:
    """An entity frame: join keys, ``event_timestamp`` (minutes after T0, as ``ts_type``), extra columns."""
    columns: dict[str, Any] = {k: pa.array(list(v)) for k, v in keys.items()}
    columns["event_timestamp"] = stamps(minutes, ts_type)
    columns.update({k: pa.array(list(v)) for k, v in extra.items()})
    return pa.table(columns)


def pit(
    store: OfflineStore,
    entity: pa.Table,
    selections: Sequence[ViewSelection],
    full_feature_names: bool = False,
    timestamp_column: str = "event_timestamp",
) -> pa.Table:
    """The point-in-time join through the protocol's ``historical``."""
    return store.historical(entity, timestamp_column, selections, full_feature_names).to_arrow()


def retrieve(
    setup: OfflineSetup,
    views: Sequence[FeatureView],
    entity_df: EntityFrame,
    features: FeatureRequest,
    full_feature_names: bool = False,
    services: Sequence[FeatureService] = (),
) -> pa.Table:
    """The point-in-time join through the SDK's validation layer (what ``get_historical_features`` runs)."""
    snapshot = RegistrySnapshot(
        project="conformance",
        version=1,
        entities={e.name: e for v in views for e in v.entities},
        data_sources={s.name: s for s in setup.sources.values()},
        feature_views={v.name: v for v in views},
        feature_services={s.name: s for s in services},
    )
    return historical_job(snapshot, setup.store, entity_df, features, full_feature_names).to_arrow()


def pulled(batches: Iterable[pa.RecordBatch], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of ``pull_latest`` / ``pull_all`` as dicts, sorted by ``keys`` then event time."""
    rows = [row for batch in batches for row in batch.to_pylist()]
    return sorted(rows, key=lambda r: (*(r[k] for k in keys), r["event_timestamp"]))


def reference_pit(
    entity: pd.DataFrame,
    source: pd.DataFrame,
    keys: Sequence[str],
    feature: str,
    ttl: timedelta,
    created: str | None = None,
) -> list[Any]:
    """``feature`` for each entity row by ``pandas.merge_asof`` (backward, exact matches allowed).

    Source rows are sorted by (event, created) so that among equal event times the last, i.e.
    the one created last, is the one merge_asof picks; ``tolerance`` is the ttl (0: none).
    """
    left = entity.assign(__row=range(len(entity)), __t=_utc_ns(entity["event_timestamp"]))
    right = source.assign(__t=_utc_ns(source["event_ts"]))
    order = ["__t"] if created is None else ["__t", created]
    merged = pd.merge_asof(
        left.sort_values("__t", kind="stable"),
        right.sort_values(order, kind="stable")[[*keys, "__t", feature]],
        on="__t",
        by=list(keys),
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(ttl) if ttl else None,
    )
    values = merged.sort_values("__row")[feature]
    return [None if pd.isna(v) else v for v in values]


def _utc_ns(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).astype("datetime64[ns, UTC]")


def state(setup: OfflineSetup, views: Sequence[FeatureView], directory: Path | None = None) -> tuple[object, ...]:
    """What a failed call must leave as it was: every view's rows and the files under ``directory``.

    ``directory`` defaults to the setup's repo directory (the factory's ``tmp_path``).
    """
    root = setup.config.repo_path if directory is None else directory
    files = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file())
    # Sorted by their whole content: rows tied on key and event time may come in any order.
    rows = [sorted(map(repr, pulled(setup.store.pull_all(v, FAR_PAST, FAR_FUTURE), v.join_keys))) for v in views]
    return (files, rows)


def window_rows(seed: int = 0) -> SourceTable:
    """Rows around the window [10, 30] (see ``test_pull_latest_window_and_tie_break``), in any order."""
    spec = feature_rows(
        {"code": ["A", "A", "A", "A", "A", "A", "B", "B", "B", "C", "D", "E"]},
        [0, 10, 20, 20, 30, 30 + US, 10 - US, 15, 15, 10, 30 + US, 9],
        {"price": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]},
        created=[0, 10, 20, 25, 30, 31, 9, None, 14, 10, 31, 9],
    )
    order = list(range(spec.table.num_rows))
    if seed:
        random.Random(seed).shuffle(order)
    return SourceTable(spec.table.take(order), spec.timestamp_field, spec.created_timestamp_column)


@dataclass
class Guarded:
    """A store with one view (``prices`` over :func:`window_rows`), and what it held before the test's failing calls."""

    setup: OfflineSetup
    view: FeatureView
    before: tuple[object, ...]

    @classmethod
    def of(cls, setup: OfflineSetup, view: FeatureView) -> Guarded:
        """Record the state of ``setup`` now."""
        return cls(setup, view, state(setup, [view]))

    def unchanged(self) -> None:
        """Assert that the view's rows and the files of the setup's repo are as they were."""
        assert state(self.setup, [self.view]) == self.before
