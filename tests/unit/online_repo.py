"""A small real repo for the online-serving tests: SQL registry, DuckDB offline, SQLite online.

Definitions::

    commodity (commodity_code: String)   venue (venue_id: Int64)
    ticks.parquet  → prices        (ttl 1 day):  price Float64, volume Int64, note String
    quotes.parquet → quotes        (venue x commodity, ttl 0): bid Float64
    ticks_push (batch source ticks.parquet) → live_prices (ttl 0): price Float64, volume Int64, note String
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ladle import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    PushSource,
    String,
    ValueType,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
venue = Entity(name="venue", join_keys=["venue_id"], value_type=ValueType.INT64)
ticks = FileSource(
    name="ticks", path="data/ticks.parquet", timestamp_field="event_timestamp", created_timestamp_column="created"
)
quotes_source = FileSource(name="quotes_src", path="data/quotes.parquet", timestamp_field="ts")
ticks_push = PushSource(name="ticks_push", batch_source=ticks)
PRICE_FIELDS = [Field(name="price", dtype=Float64), Field(name="volume", dtype=Int64), Field(name="note", dtype=String)]
prices = FeatureView(name="prices", source=ticks, entities=[commodity], ttl=timedelta(days=1), schema=PRICE_FIELDS)
live_prices = FeatureView(name="live_prices", source=ticks_push, entities=[commodity], schema=PRICE_FIELDS)
quotes = FeatureView(
    name="quotes", source=quotes_source, entities=[venue, commodity], schema=[Field(name="bid", dtype=Float64)]
)
model = FeatureService(name="model_v1", features=[prices[["price"]], quotes.with_name("q")])
OBJECTS: list[Any] = [commodity, venue, ticks, quotes_source, ticks_push, prices, live_prices, quotes, model]


def tick_rows(events: Sequence[tuple[str, datetime, float, int]], created_offset: timedelta = timedelta(0)) -> pa.Table:
    """Source rows ``(code, event time, price, volume)``; created = event time + offset."""
    return pa.table(
        {
            "commodity_code": [e[0] for e in events],
            "event_timestamp": pa.array([e[1] for e in events], TS),
            "created": pa.array([e[1] + created_offset for e in events], TS),
            "price": pa.array([e[2] for e in events], pa.float64()),
            "volume": pa.array([e[3] for e in events], pa.int64()),
            "note": [f"{e[0]}@{e[2]}" for e in events],
        }
    )


#: Hourly ticks for A, B, C over 48 hours from T0: price = hour, volume = 100 * hour + entity index.
HOURLY = [(code, T0 + timedelta(hours=h), float(h), 100 * h + i) for h in range(48) for i, code in enumerate("ABC")]


def build(
    root: Path,
    ticks_rows: pa.Table | None = None,
    materialization: dict[str, Any] | None = None,
) -> FeatureStore:
    """Write the Parquet sources, configure and apply the repo in ``root``."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(ticks_rows if ticks_rows is not None else tick_rows(HOURLY), data / "ticks.parquet")
    pq.write_table(
        pa.table(
            {
                "venue_id": pa.array([1, 2], pa.int64()),
                "commodity_code": ["A", "A"],
                "ts": pa.array([T0, T0], TS),
                "bid": [10.0, 20.0],
            }
        ),
        data / "quotes.parquet",
    )
    config: dict[str, Any] = {
        "project": "online_test",
        "registry": {"path": "data/registry.db", "cache_mode": "sync", "cache_ttl_seconds": 0},
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {"type": "duckdb"},
    }
    if materialization:
        config["materialization"] = materialization
    (root / "feature_store.yaml").write_text(yaml.safe_dump(config))  # for the CLI tests
    store = FeatureStore(repo_path=root)
    store.apply(OBJECTS)
    return store
