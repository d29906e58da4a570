"""The commodity-analytics platform's two materialization schedules and its freshness check.

The platform's feature repo declares them with ``from ladle.schedule import DEFAULT_SCHEDULES``
(any module-level ``Schedule``, or list/tuple of them, is picked up by ``ladle schedule``).
"""

from __future__ import annotations

from datetime import timedelta

from ladle.schedule.monitor import MonitorSchedule
from ladle.schedule.spec import Schedule

#: Every hour at :05, the last 2 hours of prices and weather (late ticks and observations included).
HOURLY_PRICES_WEATHER = Schedule(
    name="hourly_prices_weather",
    cron="5 * * * *",
    feature_views=["commodity_price_features", "weather_features"],
    lookback=timedelta(hours=2),
    timezone="UTC",
    description="Hourly at :05 UTC: materialize the last 2 hours of prices and weather.",
)

#: Every day at 02:00, the last 7 days of macro indicators (releases are revised for days).
DAILY_ECONOMIC = Schedule(
    name="daily_economic",
    cron="0 2 * * *",
    feature_views=["economic_features"],
    lookback=timedelta(days=7),
    timezone="UTC",
    description="Daily at 02:00 UTC: materialize the last 7 days of economic indicators.",
)

#: Both platform schedules.
DEFAULT_SCHEDULES: tuple[Schedule, ...] = (HOURLY_PRICES_WEATHER, DAILY_ECONOMIC)

#: Every hour at :15, each platform view's newest event against its ``ladle.freshness_slo`` tag
#: (freshness reports and the ``ladle_feature_freshness_*`` gauges; see docs/monitoring.md).
HOURLY_FRESHNESS = MonitorSchedule(
    name="hourly_freshness",
    cron="15 * * * *",
    check="freshness",
    feature_views=["commodity_price_features", "weather_features", "economic_features"],
    lookback=timedelta(hours=1),
    description="Hourly at :15 UTC: check every platform view against its freshness SLO.",
)

#: The platform's scheduled monitoring checks.
PLATFORM_MONITORS: tuple[Schedule, ...] = (HOURLY_FRESHNESS,)
