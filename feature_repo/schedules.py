"""When the platform's views are materialized (see docs/schedule.md).

* every hour at :05, the last 2 hours of ``commodity_price_features`` and ``weather_features``;
* every day at 02:00 UTC, the last 7 days of ``economic_features``;
* every hour at :15, a freshness check of the three views against their ``ladle.freshness_slo``
  tags (a monitor schedule: docs/monitoring.md).

With the shipped data the offline store is real history that ends in 2019, so these runs find
nothing new: fresh rows reach the online store through the live feed (docs/live-feed.md). They
are what a deployment with a daily ingestion of new real data would run.
"""

from ladle.schedule import DAILY_ECONOMIC, HOURLY_FRESHNESS, HOURLY_PRICES_WEATHER

__all__ = ["DAILY_ECONOMIC", "HOURLY_FRESHNESS", "HOURLY_PRICES_WEATHER"]
