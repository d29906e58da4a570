"""Scheduled materialization: ``Schedule`` definitions declared in a feature repo, run by ``ladle schedule``.

>>> from ladle.schedule import Schedule, Scheduler, collect_schedules
>>> scheduler = Scheduler(store, collect_schedules(store.repo_path))
>>> scheduler.run(stop_event)

See docs/schedule.md for the semantics (windows, leases, catch-up, retries).
"""

from __future__ import annotations

from ladle.registry.schedule_runs import ScheduleRun, ScheduleState
from ladle.schedule.clock import Clock, ManualClock, SystemClock
from ladle.schedule.collect import collect_schedules
from ladle.schedule.cron import CronSchedule
from ladle.schedule.defaults import (
    DAILY_ECONOMIC,
    DEFAULT_SCHEDULES,
    HOURLY_FRESHNESS,
    HOURLY_PRICES_WEATHER,
    PLATFORM_MONITORS,
)
from ladle.schedule.execute import FireResult
from ladle.schedule.monitor import MonitorSchedule
from ladle.schedule.plan import CatchUpPlan, due_at, plan_fires
from ladle.schedule.runner import Scheduler, SchedulerSettings, ScheduleStatus
from ladle.schedule.spec import Schedule, find_schedule

__all__ = [
    "CatchUpPlan",
    "Clock",
    "CronSchedule",
    "DAILY_ECONOMIC",
    "DEFAULT_SCHEDULES",
    "FireResult",
    "HOURLY_FRESHNESS",
    "HOURLY_PRICES_WEATHER",
    "ManualClock",
    "MonitorSchedule",
    "PLATFORM_MONITORS",
    "Schedule",
    "ScheduleRun",
    "ScheduleState",
    "ScheduleStatus",
    "Scheduler",
    "SchedulerSettings",
    "SystemClock",
    "collect_schedules",
    "due_at",
    "find_schedule",
    "plan_fires",
]
