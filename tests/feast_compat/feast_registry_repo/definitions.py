"""A Feast 0.67 repo that covers the kinds ``ladle import-feast`` maps; the real Feast applies it in the tests."""

from datetime import timedelta

import pandas as pd
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    KafkaSource,
    PushSource,
    RequestSource,
    StreamFeatureView,
    ValueType,
)
from feast.aggregation import Aggregation
from feast.data_format import JsonFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.permissions.action import AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy
from feast.types import Array, Float32, Float64, Int64, String

commodity = Entity(
    name="commodity",
    join_keys=["commodity_code"],
    value_type=ValueType.STRING,
    description="A traded commodity",
    owner="market-data@example.com",
    tags={"domain": "markets"},
)
country = Entity(name="country", join_keys=["country_code"], value_type=ValueType.STRING)

prices_source = FileSource(
    name="prices_source",
    path="data/prices.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="daily prices",
    tags={"tier": "gold"},
    owner="data@example.com",
)
macro_source = FileSource(name="macro_source", path="data/macro.parquet", timestamp_field="event_timestamp")
prices_push = PushSource(name="prices_push", batch_source=prices_source, description="fresh prices")

prices = FeatureView(
    name="prices",
    entities=[commodity],
    ttl=timedelta(days=3),
    schema=[
        Field(name="commodity_code", dtype=String),
        Field(name="price", dtype=Float64, description="close, USD", tags={"unit": "usd"}),
        Field(name="volume", dtype=Int64),
        Field(name="recent", dtype=Array(Float32)),
    ],
    source=prices_push,
    online=True,
    description="Prices per commodity",
    tags={"domain": "markets", "team": "quant"},
    owner="market-data@example.com",
)

macro = FeatureView(
    name="macro",
    entities=[country],
    ttl=timedelta(days=120, hours=6),
    schema=[Field(name="country_code", dtype=String), Field(name="gdp_growth", dtype=Float64)],
    source=macro_source,
    tags={"domain": "macro"},
)

request = RequestSource(name="fx", schema=[Field(name="fx_rate", dtype=Float64)])


@on_demand_feature_view(sources=[prices, request], schema=[Field(name="price_eur", dtype=Float64)])
def price_eur(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["price_eur"] = inputs["price"] * inputs["fx_rate"]
    return out


@on_demand_feature_view(
    sources=[macro],
    schema=[Field(name="gdp_growth_pct", dtype=Float64)],
    mode="python",
    write_to_online_store=True,
    description="growth in percent",
    tags={"unit": "pct"},
    owner="macro@example.com",
)
def gdp_pct(inputs: dict) -> dict:
    return {"gdp_growth_pct": [g * 100.0 for g in inputs["gdp_growth"]]}


ticks = KafkaSource(
    name="ticks",
    kafka_bootstrap_servers="127.0.0.1:19092",
    topic="commodity-ticks",
    timestamp_field="event_timestamp",
    message_format=JsonFormat(schema_json="commodity_code string, event_timestamp timestamp, price double"),
    batch_source=FileSource(name="ticks_batch", path="data/ticks.parquet", timestamp_field="event_timestamp"),
    watermark_delay_threshold=timedelta(seconds=30),
)

price_stream = StreamFeatureView(
    name="price_stream",
    source=ticks,
    entities=[commodity],
    ttl=timedelta(days=1),
    mode="python",
    schema=[Field(name="commodity_code", dtype=String), Field(name="price_mean_1h", dtype=Float64)],
    aggregations=[
        Aggregation(column="price", function="mean", time_window=timedelta(hours=1), name="price_mean_1h"),
    ],
    timestamp_field="event_timestamp",
    online=True,
    tags={"stream": "yes"},
    owner="stream@example.com",
)

price_model = FeatureService(
    name="price_model",
    features=[prices[["price", "volume"]], macro.with_name("m"), price_eur],
    description="price model inputs",
    tags={"model": "v1"},
    owner="quant@example.com",
)
macro_only = FeatureService(name="macro_only", features=[macro])

readers = Permission(
    name="readers",
    types=[FeatureView, FeatureService],
    name_patterns=["price.*"],
    actions=[AuthzedAction.READ_ONLINE, AuthzedAction.DESCRIBE],
    policy=RoleBasedPolicy(roles=["reader"]),
    tags={"team": "quant"},
)
