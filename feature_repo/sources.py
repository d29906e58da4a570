"""Where the platform's feature rows live offline: one Parquet directory per view.

``ladle ingest`` writes month partitions into these directories (idempotently); pushes with
``to="offline"`` add files next to them.
"""

from ladle import FileSource, PushSource

commodity_prices_source = FileSource(
    name="commodity_prices_source",
    path="data/offline/commodity_prices/",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Price features computed from (replayed) ticks anchored on real daily closes.",
)

commodity_prices_push = PushSource(
    name="commodity_prices_push",
    batch_source=commodity_prices_source,
    description="Fresh price features pushed by the tick stream.",
)

economic_source = FileSource(
    name="economic_source",
    path="data/offline/economic/",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Macro indicators keyed by their publication (release) date.",
)

weather_source = FileSource(
    name="weather_source",
    path="data/offline/weather/",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Weather features from hourly station observations.",
)
