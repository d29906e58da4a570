"""A small real repo for the feature-log and erasure tests, on any online and offline store.

Two entities (``commodity_code`` text, ``venue`` text); ``prices`` keyed by commodity, ``venue_prices``
keyed by (commodity, venue); the service ``price_model`` logs everything it serves, ``plain`` logs nothing.
Rows are appended through the offline store's own ``append`` (so every store gets the same rows) and
materialized into the online store.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from ladle import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, Float64, ValueType
from ladle.definitions import DataSource, DorisSource, IcebergSource
from ladle.definitions.feature_logging import LoggingConfig

EVENT_TIME = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
OLDER = EVENT_TIME - timedelta(days=1)
CODES = ["crude_oil_wti", "brent", "gold"]
VENUES = ["ICE", "NYMEX"]
_TS = pa.timestamp("us", tz="UTC")


def prices_rows() -> pa.Table:
    """Two events per commodity (a day apart)."""
    codes = CODES * 2
    when = [OLDER] * len(CODES) + [EVENT_TIME] * len(CODES)
    return pa.table(
        {
            "commodity_code": codes,
            "current_price": [float(10 * i + 1) for i in range(len(codes))],
            "event_timestamp": pa.array(when, _TS),
        }
    )


def venue_rows() -> pa.Table:
    """One event per (commodity, venue)."""
    pairs = [(c, v) for c in CODES for v in VENUES]
    return pa.table(
        {
            "commodity_code": [c for c, _ in pairs],
            "venue": [v for _, v in pairs],
            "spread": [0.5 * i for i in range(len(pairs))],
            "event_timestamp": pa.array([EVENT_TIME] * len(pairs), _TS),
        }
    )


def _sources(kind: str, tag: str) -> tuple[DataSource, DataSource]:
    if kind == "iceberg":
        return (
            IcebergSource(name="prices_src", table=f"{tag}.prices", timestamp_field="event_timestamp"),
            IcebergSource(name="venue_src", table=f"{tag}.venue_prices", timestamp_field="event_timestamp"),
        )
    if kind == "mysql":
        return (
            DorisSource(name="prices_src", table=f"{tag}_prices", timestamp_field="event_timestamp"),
            DorisSource(name="venue_src", table=f"{tag}_venue_prices", timestamp_field="event_timestamp"),
        )
    return (
        FileSource(name="prices_src", path="data/prices/", timestamp_field="event_timestamp"),
        FileSource(name="venue_src", path="data/venue_prices.parquet", timestamp_field="event_timestamp"),
    )


def build(
    path: Path, online: Mapping[str, Any], offline: Mapping[str, Any] | None = None, tag: str = "t", rate: float = 1.0
) -> FeatureStore:
    """Write, apply and fill the repo; returns an open store."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    offline = dict(offline or {"type": "duckdb"})
    config = {
        "project": f"flog_{tag}",
        "registry": {"path": str(path / "data" / "registry.db"), "cache_ttl_seconds": 0},
        "online_store": dict(online),
        "offline_store": offline,
        # No CPU budget: these tests check that exactly the sampled requests are logged (the budget,
        # which may log fewer under load, has its own tests: test_feature_log_budget.py).
        "feature_server": {"feature_logging": {"flush_interval_secs": 0.2, "cpu_budget": None}},
    }
    store = FeatureStore(repo_path=path, config=config)
    kind = "iceberg" if offline["type"] == "iceberg" else "mysql" if offline["type"] == "mysql" else "file"
    prices_src, venue_src = _sources(kind, tag)
    if kind == "mysql":
        from ladle.offline.doris.load import create_table

        block: Any = store.config.offline_store
        create_table(
            block, block.database, f"{tag}_prices", prices_rows().schema, ["commodity_code"], "event_timestamp"
        )
        keys = ["commodity_code", "venue"]
        create_table(block, block.database, f"{tag}_venue_prices", venue_rows().schema, keys, "event_timestamp")
    store.offline_store.append(prices_src, prices_rows())
    store.offline_store.append(venue_src, venue_rows())
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    venue = Entity(name="venue", join_keys=["venue"], value_type=ValueType.STRING)
    prices = FeatureView(
        name="prices", entities=[commodity], ttl=timedelta(days=30),
        schema=[Field(name="current_price", dtype=Float64)], source=prices_src,
    )  # fmt: skip
    venue_prices = FeatureView(
        name="venue_prices", entities=[commodity, venue], ttl=timedelta(days=30),
        schema=[Field(name="spread", dtype=Float64)], source=venue_src,
    )  # fmt: skip
    logged = FeatureService(
        name="price_model", features=[prices, venue_prices], logging_config=LoggingConfig(sample_rate=rate)
    )
    plain = FeatureService(name="plain", features=[prices])
    store.apply([commodity, venue, prices_src, venue_src, prices, venue_prices, logged, plain])
    store.materialize(OLDER - timedelta(hours=1), EVENT_TIME + timedelta(hours=1))
    return store


def entity_rows(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Entity rows for ``price_model`` (both join keys)."""
    return [{"commodity_code": c, "venue": v} for c, v in pairs]
