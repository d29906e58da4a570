"""Where the commodity platform's feature rows live, written for Feast 0.67."""

from feast import FileSource, PushSource
from feast.data_format import ParquetFormat
from feast.infra.offline_stores.file_source import FileSource as FeastFileSource

commodity_prices_source = FileSource(
    name="commodity_prices_source",
    path="data/offline/commodity_prices/",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    file_format=ParquetFormat(),
    description="Price features of the real daily closes, at their real dates.",
)

commodity_prices_push = PushSource(
    name="commodity_prices_push",
    batch_source=commodity_prices_source,
    description="Fresh price features pushed by the live feed (simulated ticks).",
)

economic_source = FeastFileSource(
    name="economic_source",
    path="data/offline/economic/",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Macro indicators keyed by their publication (release) date.",
)

economic_push = PushSource(
    name="economic_push",
    batch_source=economic_source,
    description="Fresh macro releases pushed by the live feed (simulated).",
)

weather_source = FileSource(
    name="weather_source",
    path="data/offline/weather/",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Weather features from hourly station observations.",
)

weather_push = PushSource(
    name="weather_push",
    batch_source=weather_source,
    description="Fresh weather observations pushed by the live feed (simulated).",
)
