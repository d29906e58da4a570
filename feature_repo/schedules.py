"""When the platform's views are materialized (see docs/schedule.md).

* every hour at :05, the last 2 hours of ``commodity_price_features`` and ``weather_features``;
* every day at 02:00 UTC, the last 7 days of ``economic_features``.
"""

from ladle.schedule import DAILY_ECONOMIC, HOURLY_PRICES_WEATHER

__all__ = ["DAILY_ECONOMIC", "HOURLY_PRICES_WEATHER"]
