"""Pure scheduling decisions: which fires are due, which to catch up, when to retry.

No I/O here: the runner feeds in the persisted
:class:`~ladle.registry.schedule_runs.ScheduleState` and the clock's ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ladle.registry.schedule_runs import ScheduleState
from ladle.schedule.spec import Schedule
from ladle.times import as_utc

_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class CatchUpPlan:
    """The fires to run now, oldest first, and the range of fires skipped by the catch-up policy."""

    fires: tuple[datetime, ...]
    skipped_first: datetime | None = None
    skipped_last: datetime | None = None

    @property
    def skipped(self) -> bool:
        """Whether some missed fires will not run."""
        return self.skipped_first is not None


def plan_fires(schedule: Schedule, cursor: datetime, now: datetime) -> CatchUpPlan:
    """Fires in ``(cursor, now]`` to run, bounded by the schedule's catch-up policy.

    ``catch_up="all"`` keeps the newest ``max_catch_up`` fires; ``"latest"`` keeps only the newest.
    """
    limit = 1 if schedule.catch_up == "latest" else schedule.max_catch_up
    fires, more = schedule.cron.newest_fires(cursor, now, limit)
    if not more:
        return CatchUpPlan(tuple(fires))
    first_skipped = schedule.cron.next_after(cursor)
    last_skipped = schedule.cron.last_at_or_before(fires[0] - _ONE_US)
    return CatchUpPlan(tuple(fires), first_skipped, last_skipped)


def due_at(schedule: Schedule, state: ScheduleState) -> datetime:
    """When the schedule next needs a run: its first pending fire, or later while backing off."""
    first_pending = schedule.next_fire(state.cursor)
    if state.failures and state.retry_at is not None:
        return max(first_pending, as_utc(state.retry_at))
    return first_pending


def retry_at(schedule: Schedule, failures: int, now: datetime, base: timedelta, cap: timedelta) -> datetime:
    """When to retry after the ``failures``-th consecutive failure: exponential backoff from ``base``
    up to ``cap``, and never later than the schedule's next fire (which retries anyway)."""
    exponent = min(max(failures - 1, 0), 32)  # bounded so the multiplication cannot overflow
    delay = min(base * (1 << exponent), cap)
    return min(now + delay, schedule.next_fire(now))
