"""Running one fire of a schedule: materialize each view's window, time it, record the outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ladle.registry.schedule_runs import ScheduleJournal, Trigger
from ladle.schedule.clock import Clock
from ladle.schedule.spec import Schedule

log = logging.getLogger(__name__)

#: ``materialize(start, end, views)``: :meth:`ladle.store.FeatureStore.materialize` in production.
Materialize = Callable[[datetime, datetime, Sequence[str]], object]


@dataclass(frozen=True)
class FireResult:
    """The outcome of one fire (one run of a schedule)."""

    schedule: str
    trigger: Trigger
    scheduled_for: datetime
    window_start: datetime
    window_end: datetime
    status: Literal["succeeded", "failed"]
    duration_seconds: float
    failed_views: tuple[str, ...] = ()
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether every view was materialized."""
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO 8601 times)."""
        return {
            "schedule": self.schedule,
            "trigger": self.trigger,
            "scheduled_for": self.scheduled_for.isoformat(),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "status": self.status,
            "duration_seconds": round(self.duration_seconds, 6),
            "failed_views": list(self.failed_views),
            "detail": self.detail,
        }


def run_fire(
    materialize: Materialize,
    journal: ScheduleJournal,
    clock: Clock,
    schedule: Schedule,
    fire: datetime,
    trigger: Trigger,
    owner: str,
) -> FireResult:
    """Materialize ``schedule``'s window for the fire at ``fire``, one view at a time.

    Every view is attempted even if an earlier one fails (one broken source should not starve the
    others); the run fails if any view failed, and is retried whole, which is safe because
    materialization is idempotent. The materializer itself records each view's duration in
    ``feast_materialization_duration``.
    """
    start, end = schedule.window(fire)
    run_id = journal.start(schedule.name, trigger, fire, (start, end), schedule.feature_views, owner, clock.now())
    began = time.perf_counter()
    failed: list[str] = []
    errors: list[str] = []
    for view in schedule.feature_views:
        try:
            materialize(start, end, [view])
        except Exception as exc:  # a scheduler outlives any one job's failure; it is recorded and retried
            log.warning("schedule %s: materializing %s for %s failed: %s", schedule.name, view, fire, exc)
            failed.append(view)
            errors.append(f"{view}: {type(exc).__name__}: {exc}")
            continue
    duration = time.perf_counter() - began
    status: Literal["succeeded", "failed"] = "failed" if failed else "succeeded"
    detail = "; ".join(errors)
    journal.finish(run_id, status, clock.now(), duration, detail)
    log.info("schedule %s: fire %s (%s) %s in %.3f s", schedule.name, fire.isoformat(), trigger, status, duration)
    return FireResult(schedule.name, trigger, fire, start, end, status, duration, tuple(failed), detail)
