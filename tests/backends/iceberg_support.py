"""Shared pieces of the Iceberg store's backend tests: a store in a temp repo, rows, views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.config import RepoConfig, load_config
from ladle.definitions import DataSource
from ladle.definitions.refs import ViewSelection
from ladle.offline.base import open_offline_store
from ladle.offline.iceberg.store import IcebergOfflineStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
FAR_PAST, FAR_FUTURE = datetime(1971, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)


def iceberg_config(repo: Path, **block: Any) -> RepoConfig:
    """A repo config whose offline store is Iceberg (SQLite catalog and warehouse in ``repo``)."""
    offline = {"type": "iceberg", "namespace": "tests", "threads": 1, **block}
    return load_config(
        {
            "project": "iceberg_tests",
            "registry": "registry.db",
            "online_store": {"type": "sqlite", "path": "online.db"},
            "offline_store": offline,
        },
        repo,
    )


def open_iceberg(repo: Path, **block: Any) -> IcebergOfflineStore:
    """The Iceberg store of :func:`iceberg_config`."""
    store = open_offline_store(iceberg_config(repo, **block))
    assert isinstance(store, IcebergOfflineStore)
    return store


def day(d: float) -> datetime:
    """``T0`` plus ``d`` days."""
    return T0 + timedelta(days=d)


def price_rows(codes: Sequence[str], days: Sequence[float], prices: Sequence[float | None], **extra: Any) -> pa.Table:
    """Rows ``code, event_ts, price`` (and extra columns)."""
    columns: dict[str, Any] = {
        "code": pa.array(list(codes), pa.string()),
        "event_ts": pa.array([day(d) for d in days], TS),
        "price": pa.array(list(prices), pa.float64()),
    }
    columns.update({k: pa.array(list(v)) for k, v in extra.items()})
    return pa.table(columns)


def prices_source(name: str = "prices") -> FileSource:
    """The FileSource ``name`` (on Iceberg: the table ``tests.<name>``)."""
    return FileSource(name=name, path=f"data/{name}/", timestamp_field="event_ts")


def prices_view(
    source: DataSource, features: Sequence[str] = ("price",), ttl: timedelta = timedelta(0), name: str = "prices"
) -> FeatureView:
    """A view of Float64 features over ``source`` keyed by ``code``."""
    schema = [Field(name=f, dtype=Float64) for f in features]
    return FeatureView(name=name, source=source, entities=[commodity], schema=schema, ttl=ttl)


def select(view: FeatureView) -> ViewSelection:
    """Every feature of ``view``."""
    return ViewSelection(view, tuple(view.feature_names), view.name, {})


def entity(codes: Sequence[str], days: Sequence[float]) -> pa.Table:
    """An entity frame ``code, event_timestamp``."""
    return pa.table({"code": list(codes), "event_timestamp": pa.array([day(d) for d in days], TS)})
