"""The commodity platform's tick stream, written for Feast 0.67: a KafkaSource and a StreamFeatureView
with aggregations (no broker is needed to apply, materialize or serve it: history is the batch source)."""

from datetime import timedelta

from entities import commodity
from feast import Field, FileSource, KafkaSource, StreamFeatureView
from feast.aggregation import Aggregation
from feast.data_format import JsonFormat
from feast.types import Float64

commodity_ticks = KafkaSource(
    name="commodity_ticks",
    kafka_bootstrap_servers="127.0.0.1:19092",
    topic="commodity-ticks",
    timestamp_field="event_timestamp",
    message_format=JsonFormat(schema_json="commodity_code string, event_timestamp timestamp, price double"),
    batch_source=FileSource(
        name="commodity_ticks_offline",
        path="data/offline/commodity_ticks/",
        timestamp_field="event_timestamp",
    ),
    watermark_delay_threshold=timedelta(seconds=30),
    description="Raw price ticks, one JSON object per message.",
)

commodity_price_stream = StreamFeatureView(
    name="commodity_price_stream",
    source=commodity_ticks,
    entities=[commodity],
    ttl=timedelta(days=3),
    aggregations=[
        Aggregation(column="price", function="mean", time_window=timedelta(hours=24), name="price_mean_24h"),
        Aggregation(column="price", function="max", time_window=timedelta(hours=24), name="price_max_24h"),
    ],
    schema=[
        Field(name="price_mean_24h", dtype=Float64),
        Field(name="price_max_24h", dtype=Float64),
    ],
    timestamp_field="event_timestamp",
    online=True,
    owner="market-data@commodity-analytics",
    tags={"domain": "markets"},
)
