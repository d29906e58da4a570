"""The platform's streams: raw ticks and weather observations on Kafka, and the views computed from them.

``ladle stream`` reads the topics, computes these views and writes them online; every event it
accepts is appended to the batch source under ``data/offline/``, where backfills and training sets
compute the same views from the same definitions (docs/streaming.md). Every feature is defined
exactly in docs/features.md, "Stream features". The shipped events are SIMULATED
(``ladle publish``, docs/live-feed.md) and each served row says so in ``simulated``.

**Where the broker is.** A Kafka source's definition holds its bootstrap servers. The default,
127.0.0.1:19092, is the local broker the demo starts (``python -m ladle.streaming.devbroker``).
A deployment points ``ladle stream`` at its cluster with ``stream: kafka: bootstrap.servers`` in
feature_store.yaml, which wins over the sources' (docs/streaming.md, "Connecting to a Kafka
cluster"), or sets ``LADLE_KAFKA_BOOTSTRAP_SERVERS`` when it runs ``ladle apply`` so the registry
holds the cluster's address. SASL and TLS settings never go here (feature_store.yaml).

**Watermark delays** (an event older than the partition's newest event time minus the delay is
late and dead-lettered, docs/streaming.md rule 2):

* ticks, 30 s: each commodity is one partition written by one feed handler in time order; what
  reorders ticks is producer batching and a handler's reconnect replaying a few seconds. Thirty
  seconds covers that with room, and a tick more than 30 s late is stale for a price model anyway.
* weather, 2 h: stations report hourly and issue corrections (and late reports after an outage)
  up to about an hour after the observation; two hours keeps those instead of dead-lettering them.

With continuous windows the delay never holds back an output row (each event emits its row at
once), so a generous delay costs nothing in freshness.
"""

import os
from datetime import timedelta

import pandas as pd
from entities import commodity, location

from ladle import (
    Aggregation,
    Bool,
    FeatureService,
    Field,
    FileSource,
    Float64,
    JsonFormat,
    KafkaSource,
    StreamFeatureView,
)

#: The demo's local broker (scripts/demo.sh); a deployment overrides it at ``ladle apply`` time.
KAFKA_BOOTSTRAP_SERVERS = os.environ.get("LADLE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")

commodity_ticks = KafkaSource(
    name="commodity_ticks",
    kafka_bootstrap_servers=KAFKA_BOOTSTRAP_SERVERS,
    topic="commodity-ticks",
    timestamp_field="event_timestamp",
    message_format=JsonFormat(
        "commodity_code string, event_timestamp timestamp, price double, volume double, simulated boolean"
    ),
    batch_source=FileSource(
        name="commodity_ticks_offline",
        path="data/offline/commodity_ticks/*.parquet",
        timestamp_field="event_timestamp",
        description="Every tick ladle stream accepted, with its Kafka partition and offset.",
    ),
    watermark_delay_threshold=timedelta(seconds=30),
    description="Raw price ticks, one JSON object per message, keyed by commodity_code (SIMULATED in the demo).",
)

weather_observations = KafkaSource(
    name="weather_observations",
    kafka_bootstrap_servers=KAFKA_BOOTSTRAP_SERVERS,
    topic="weather-observations",
    timestamp_field="event_timestamp",
    message_format=JsonFormat(
        "location_id string, event_timestamp timestamp, temperature_c double, precipitation_mm double, "
        "wind_speed_ms double, wind_gust_ms double, pressure_hpa double, simulated boolean"
    ),
    batch_source=FileSource(
        name="weather_observations_offline",
        path="data/offline/weather_observations/*.parquet",
        timestamp_field="event_timestamp",
        description="Every weather observation ladle stream accepted, with its Kafka partition and offset.",
    ),
    watermark_delay_threshold=timedelta(hours=2),
    description="Raw station observations keyed by location_id (SIMULATED in the demo).",
)


def clean_ticks(ticks: pd.DataFrame) -> pd.DataFrame:
    """Drop ticks without a positive finite price (log ranges need one); ``simulated`` as 0/1."""
    import numpy as np

    price = pd.to_numeric(ticks["price"], errors="coerce").astype("float64")
    keep = np.isfinite(price) & (price > 0)
    out = ticks.loc[keep].copy()
    out["simulated"] = out["simulated"].fillna(False).astype("float64")
    return out


def price_stream_features(rows: pd.DataFrame) -> pd.DataFrame:
    """Percent changes, Parkinson volatility and the simulated flag from the aggregates."""
    import numpy as np

    out = rows.copy()
    out["price_change_1h"] = 100.0 * (rows["current_price"] / rows["price_first_1h"] - 1.0)
    out["price_change_24h"] = 100.0 * (rows["current_price"] / rows["price_first_24h"] - 1.0)
    # Parkinson: variance per trading day = ln(H/L)^2 / (4 ln 2 * 5), a 7-day window holding
    # 5 trading sessions; annualised over 252 sessions, in percent.
    log_range = np.log(rows["price_max_7d"] / rows["price_min_7d"])
    out["volatility_7d"] = 100.0 * log_range * np.sqrt(252.0 / (4.0 * np.log(2.0) * 5.0))
    out["simulated"] = rows["simulated_max_30d"].fillna(0.0) > 0
    return out


commodity_price_stream = StreamFeatureView(
    name="commodity_price_stream",
    source=commodity_ticks,
    entities=[commodity],
    # as commodity_price_features: a price older than a long weekend is stale for a price model
    ttl=timedelta(days=3),
    aggregations=[
        Aggregation(column="price", function="last", time_window=timedelta(days=30), name="current_price"),
        Aggregation(column="price", function="first", time_window=timedelta(hours=1), name="price_first_1h"),
        Aggregation(column="price", function="first", time_window=timedelta(hours=24), name="price_first_24h"),
        Aggregation(column="volume", function="sum", time_window=timedelta(hours=24), name="volume_24h"),
        Aggregation(column="price", function="max", time_window=timedelta(days=7), name="price_max_7d"),
        Aggregation(column="price", function="min", time_window=timedelta(days=7), name="price_min_7d"),
        Aggregation(column="price", function="mean", time_window=timedelta(days=7), name="ma_7d"),
        Aggregation(column="price", function="mean", time_window=timedelta(days=30), name="ma_30d"),
        Aggregation(column="simulated", function="max", time_window=timedelta(days=30), name="simulated_max_30d"),
    ],
    udf=clean_ticks,
    derive=price_stream_features,
    schema=[
        Field(name="current_price", dtype=Float64, description="last tick's price, USD"),
        Field(name="price_change_1h", dtype=Float64, description="% change from the first tick of the last hour"),
        Field(name="price_change_24h", dtype=Float64, description="% change from the first tick of the last 24 h"),
        Field(name="volume_24h", dtype=Float64, description="sum of tick volumes over 24 hours"),
        Field(name="volatility_7d", dtype=Float64, description="annualised Parkinson volatility of the 7-day range, %"),
        Field(name="ma_7d", dtype=Float64, description="mean tick price over 7 days"),
        Field(name="ma_30d", dtype=Float64, description="mean tick price over 30 days"),
        Field(name="simulated", dtype=Bool, description="true when any tick of the last 30 days is simulated"),
    ],
    online=True,
    owner="market-data@commodity-analytics",
    description="Price features per commodity computed from the raw tick stream (docs/features.md).",
    tags={"domain": "markets", "live": "simulated", "path": "stream"},
)


def clean_observations(obs: pd.DataFrame) -> pd.DataFrame:
    """Blank values outside their physical range (as ladle.transforms.weather.VALID_RANGES); flag as 0/1."""
    from ladle.transforms.weather import VALID_RANGES

    out = obs.copy()
    for column, (low, high) in VALID_RANGES.items():
        values = pd.to_numeric(out[column], errors="coerce").astype("float64")
        out[column] = values.where((values >= low) & (values <= high))
    out["simulated"] = out["simulated"].fillna(False).astype("float64")
    return out


def weather_stream_features(rows: pd.DataFrame) -> pd.DataFrame:
    """The storm index (weights and saturations of ladle.transforms.weather) and the simulated flag."""
    from ladle.transforms.weather import STORM_COMPONENTS

    def term(name: str, value: pd.Series) -> pd.Series:
        weight, saturation = STORM_COMPONENTS[name]
        return weight * (value.fillna(0.0) / saturation).clip(lower=0.0, upper=1.0)

    wind = rows["wind_last_3h"]
    gust = rows["gust_max_3h"].fillna(wind)
    fall = rows["pressure_first_3h"] - rows["pressure_last_3h"]
    out = rows.copy()
    out["storm_index"] = 10.0 * (
        term("wind", wind) + term("gust", gust) + term("pressure_fall", fall) + term("rain", rows["rain_3h"])
    )
    out["simulated"] = rows["simulated_max_24h"].fillna(0.0) > 0
    return out


weather_stream = StreamFeatureView(
    name="weather_stream",
    source=weather_observations,
    entities=[location],
    # as weather_features: a few missed hourly reports before a station is flagged stale
    ttl=timedelta(hours=6),
    aggregations=[
        Aggregation(column="temperature_c", function="mean", time_window=timedelta(hours=24), name="temperature_avg"),
        Aggregation(column="precipitation_mm", function="sum", time_window=timedelta(hours=24), name="precipitation"),
        Aggregation(column="wind_speed_ms", function="mean", time_window=timedelta(hours=24), name="wind_speed"),
        Aggregation(column="wind_speed_ms", function="last", time_window=timedelta(hours=3), name="wind_last_3h"),
        Aggregation(column="wind_gust_ms", function="max", time_window=timedelta(hours=3), name="gust_max_3h"),
        Aggregation(column="pressure_hpa", function="first", time_window=timedelta(hours=3), name="pressure_first_3h"),
        Aggregation(column="pressure_hpa", function="last", time_window=timedelta(hours=3), name="pressure_last_3h"),
        Aggregation(column="precipitation_mm", function="sum", time_window=timedelta(hours=3), name="rain_3h"),
        Aggregation(column="simulated", function="max", time_window=timedelta(hours=24), name="simulated_max_24h"),
    ],
    udf=clean_observations,
    derive=weather_stream_features,
    schema=[
        Field(name="temperature_avg", dtype=Float64, description="mean valid temperature over 24 h, °C"),
        Field(name="precipitation", dtype=Float64, description="valid precipitation over 24 h, mm"),
        Field(name="wind_speed", dtype=Float64, description="mean valid sustained wind over 24 h, m/s"),
        Field(name="storm_index", dtype=Float64, description="storm severity 0..10 from 3-hour aggregates"),
        Field(name="simulated", dtype=Bool, description="true when any observation of the last 24 h is simulated"),
    ],
    online=True,
    owner="weather@commodity-analytics",
    description="Weather features per station computed from the raw observation stream (docs/features.md).",
    tags={"domain": "weather", "live": "simulated", "path": "stream"},
)

price_model_stream = FeatureService(
    name="price_model_stream",
    features=[commodity_price_stream, weather_stream[["temperature_avg", "storm_index"]]],
    owner="quant-research@commodity-analytics",
    description="The price model's market and weather inputs from the stream views (fresh to the second).",
    tags={"model": "price_model", "path": "stream"},
)
