"""Example definitions created by ``ladle init``: daily commodity prices.

Apply them with ``ladle apply``; ``data/commodity_prices.parquet`` holds seeded sample data
(a random walk around typical price levels, not market data).
"""

from __future__ import annotations

from datetime import timedelta

from ladle import Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64, PushSource, ValueType

commodity = Entity(
    name="commodity",
    join_keys=["commodity_code"],
    value_type=ValueType.STRING,
    description="A traded commodity, e.g. crude_oil_wti or gold.",
)

commodity_prices_source = FileSource(
    name="commodity_prices_source",
    path="data/commodity_prices.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Daily closing prices and volumes.",
)

commodity_price_features = FeatureView(
    name="commodity_price_features",
    entities=[commodity],
    ttl=timedelta(days=7),
    schema=[
        Field(name="close_price", dtype=Float64, description="Closing price in USD."),
        Field(name="price_change_1d", dtype=Float64, description="Relative change from the previous close."),
        Field(name="volume", dtype=Int64, description="Contracts traded that day."),
    ],
    source=commodity_prices_source,
    tags={"team": "commodities"},
)

# Fresh prices pushed by a client (`store.push` or POST /push) land in this view.
commodity_prices_push = PushSource(name="commodity_prices_push", batch_source=commodity_prices_source)

commodity_price_fresh = FeatureView(
    name="commodity_price_fresh",
    entities=[commodity],
    ttl=timedelta(days=1),
    schema=[
        Field(name="close_price", dtype=Float64),
        Field(name="price_change_1d", dtype=Float64),
    ],
    source=commodity_prices_push,
    tags={"team": "commodities"},
)

price_model_v1 = FeatureService(
    name="price_model_v1",
    features=[commodity_price_features[["close_price", "price_change_1d"]]],
    description="Features of the price model.",
)
