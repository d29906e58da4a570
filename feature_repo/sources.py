"""Where the platform's feature rows live offline: one Parquet directory per view.

``ladle ingest`` writes the real history into these directories as month partitions, at the
real event times (idempotently). ``ladle feed`` pushes the simulated live rows through the push
sources (online only by default; with ``--to online_and_offline`` its files land next to them).
"""

from ladle import FileSource, PushSource

commodity_prices_source = FileSource(
    name="commodity_prices_source",
    path="data/offline/commodity_prices/",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Price features of the real daily closes, at their real dates.",
)

commodity_prices_push = PushSource(
    name="commodity_prices_push",
    batch_source=commodity_prices_source,
    description="Fresh price features pushed by the live feed (simulated ticks).",
)

economic_source = FileSource(
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
