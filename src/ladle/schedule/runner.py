"""``Scheduler``: runs a repo's schedules on time, once each, catching up after downtime.

Several schedulers may share one registry (for availability). For each schedule, the one holding
the registry lease ``schedule:<name>`` runs it; before running it re-reads the schedule's cursor,
so a fire already handled by another scheduler is never run again. A scheduler that finds the
lease taken re-checks after ``lease_poll``; by then the holder has run the fire, or died and let
its lease expire, so the fire is never lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ladle.errors import ConfigError, FeatureViewNotFoundError, LadleError, LeaseHeldError, RepoError
from ladle.registry.base import LeaseRegistry
from ladle.registry.schedule_runs import ScheduleJournal, ScheduleRun, ScheduleState, Trigger
from ladle.schedule.clock import Clock, SystemClock
from ladle.schedule.execute import FireResult, Materialize, run_fire
from ladle.schedule.lease import Lease
from ladle.schedule.monitor import MonitorSchedule, monitor_job
from ladle.schedule.plan import CatchUpPlan, due_at, plan_fires, retry_at
from ladle.schedule.spec import Schedule, find_schedule

if TYPE_CHECKING:
    from ladle.store import FeatureStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerSettings:
    """Timing knobs of the scheduler loop (defaults suit hourly and daily jobs)."""

    #: How long a lease lasts without renewal; renewed every third of it while a run is going.
    lease_ttl: timedelta = timedelta(minutes=5)
    #: How soon to look again when another scheduler holds a due schedule's lease, or the registry failed.
    lease_poll: timedelta = timedelta(seconds=30)
    #: First retry delay after a failed run; doubles per consecutive failure up to ``retry_max``.
    retry_base: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class ScheduleStatus:
    """What ``ladle schedule --list`` shows for one schedule."""

    schedule: Schedule
    next_run: datetime
    state: ScheduleState | None
    last_run: ScheduleRun | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        state = self.state
        return {
            **self.schedule.to_spec(),
            "next_run": self.next_run.isoformat(),
            "handled_until": state.cursor.isoformat() if state else None,
            "consecutive_failures": state.failures if state else 0,
            "last_run": self.last_run.to_dict() if self.last_run else None,
        }


@dataclass
class Scheduler:
    """Runs ``schedules`` against ``store``; see the module docstring for the guarantees.

    >>> scheduler = Scheduler(store, collect_schedules(store.repo_path))
    >>> scheduler.run(stop_event)          # until stop_event is set (SIGTERM in the CLI)
    >>> scheduler.run_once("daily_economic")
    """

    store: FeatureStore
    schedules: Sequence[Schedule]
    clock: Clock = field(default_factory=SystemClock)
    settings: SchedulerSettings = field(default_factory=SchedulerSettings)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    on_result: Callable[[FireResult], None] | None = None
    #: How a window is materialized; defaults to ``store.materialize`` (another engine can plug in here).
    materialize: Materialize | None = None
    journal: ScheduleJournal = field(init=False)
    _not_before: dict[str, datetime] = field(init=False, default_factory=dict)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        names = [s.name for s in self.schedules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RepoError(f"schedules {dupes} are declared more than once; schedule names must be unique")
        self.journal = ScheduleJournal.open(self.store.config.registry, self.store.project, self.store.repo_path)

    def schedule(self, name: str) -> Schedule:
        """The schedule called ``name``."""
        return find_schedule(self.schedules, name, self.store.project)

    def check_views(self, schedules: Sequence[Schedule] | None = None) -> None:
        """Raise if a schedule (default: every one) names a feature view the registry does not have."""
        views = self.store.registry.snapshot(allow_cache=False).feature_views
        for schedule in self.schedules if schedules is None else schedules:
            for view in schedule.feature_views:
                if view not in views:
                    raise FeatureViewNotFoundError(
                        view,
                        self.store.project,
                        detail=f"Schedule '{schedule.name}' materializes it; run 'ladle apply' first.",
                    )

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, until: datetime | None = None) -> None:
        """Run schedules as they come due until ``stop`` is set (or the clock passes ``until``).

        A run in progress is finished (and its lease released) before returning.
        """
        self._stop = stop if stop is not None else threading.Event()
        while not self._stop.is_set():
            wake = self.run_pending()
            if wake is None:
                continue
            if until is not None and wake > until:
                return
            if not self.clock.sleep_until(wake, self._stop):
                return

    def run_pending(self) -> datetime | None:
        """Run every schedule that is due now; None if something ran, else when the next one is due."""
        now = self.clock.now()
        try:
            states = self.journal.states()
            for schedule in self.schedules:
                if schedule.name not in states:  # first sighting: fires from now on are due, and caught up
                    states[schedule.name] = self.journal.ensure(schedule.name, now)
        except LadleError as error:
            # A registry outage must not kill the scheduler: wait and look again.
            log.warning("cannot read schedule state (%s); retrying in %s", error, self.settings.lease_poll)
            return now + self.settings.lease_poll
        due = {s.name: self._due(s, states[s.name]) for s in self.schedules}
        ready = [s for s in self.schedules if due[s.name] <= now]
        for schedule in sorted(ready, key=lambda s: due[s.name]):
            if self._stop.is_set():
                break
            self._tick(schedule)
        return None if ready else min(due.values(), default=now + self.settings.lease_poll)

    def _due(self, schedule: Schedule, state: ScheduleState) -> datetime:
        at = due_at(schedule, state)
        return max(at, self._not_before.get(schedule.name, at))

    def _tick(self, schedule: Schedule) -> list[FireResult]:
        try:
            with self._lease(schedule) as lease:
                results = self._catch_up(schedule, lease) if lease.held else []
                if not lease.held:
                    log.info("schedule %s: another scheduler holds its lease; checking again later", schedule.name)
        except LadleError as error:
            log.warning(
                "schedule %s: registry error (%s); retrying in %s", schedule.name, error, self.settings.lease_poll
            )
            results = []
        if not results:
            # Nothing ran here (busy lease, registry trouble): look again later instead of spinning.
            self._not_before[schedule.name] = self.clock.now() + self.settings.lease_poll
        return results

    def _catch_up(self, schedule: Schedule, lease: Lease) -> list[FireResult]:
        results: list[FireResult] = []
        while not self._stop.is_set() and not lease.lost:
            now = self.clock.now()
            state = self.journal.ensure(schedule.name, now)  # fresh: another scheduler may have run it
            if due_at(schedule, state) > now:
                break
            plan = plan_fires(schedule, state.cursor, now)
            if plan.skipped:
                self._record_skip(schedule, plan, now)
            for fire in plan.fires:
                trigger = _trigger(fire, plan, state)
                result = run_fire(self._job(schedule), self.journal, self.clock, schedule, fire, trigger, self.owner)
                results.append(result)
                if self.on_result is not None:
                    self.on_result(result)
                if not result.ok:
                    self._record_failure(schedule, state.failures + 1)
                    return results
                self.journal.advance(schedule.name, fire, self.clock.now())
                state = ScheduleState(fire)
                if self._stop.is_set() or lease.lost:
                    break
        return results

    def _record_failure(self, schedule: Schedule, failures: int) -> None:
        now = self.clock.now()
        when = retry_at(schedule, failures, now, self.settings.retry_base, self.settings.retry_max)
        self.journal.fail(schedule.name, when, now)
        log.warning("schedule %s: run failed (%d in a row); retrying at %s", schedule.name, failures, when.isoformat())

    def _record_skip(self, schedule: Schedule, plan: CatchUpPlan, now: datetime) -> None:
        assert plan.skipped_first is not None and plan.skipped_last is not None
        first, last = plan.skipped_first, plan.skipped_last
        views = " ".join(f"-v {v}" for v in schedule.feature_views)
        why = "catch_up='latest'" if schedule.catch_up == "latest" else f"max_catch_up={schedule.max_catch_up}"
        detail = (
            f"missed fires {first.isoformat()} .. {last.isoformat()} skipped ({why}); to backfill run: "
            f"ladle materialize {schedule.window(first)[0].isoformat()} {last.isoformat()} {views}"
        )
        log.warning("schedule %s: %s", schedule.name, detail)
        window = (schedule.window(first)[0], last)
        self.journal.skip(schedule.name, first, last, window, schedule.feature_views, self.owner, now, detail)

    def _lease(self, schedule: Schedule) -> Lease:
        registry = self.store.registry
        if not isinstance(registry, LeaseRegistry):
            raise ConfigError("schedules need a registry that can hold leases (the SQL registry does)")
        return Lease(registry, _lease_name(schedule), self.owner, self.settings.lease_ttl)

    def _job(self, schedule: Schedule) -> Materialize:
        """What a fire of ``schedule`` runs per view: a monitor check, or materialization."""
        if isinstance(schedule, MonitorSchedule):
            return monitor_job(self.store, schedule)
        return self._materialize

    def _materialize(self, start: datetime, end: datetime, views: Sequence[str]) -> None:
        if self.materialize is not None:
            self.materialize(start, end, views)
        else:
            self.store.materialize(start, end, feature_views=list(views))

    def close(self) -> None:
        """Close the scheduler's own registry connections (the store is the caller's)."""
        self.journal.close()

    # -- one-off and status -----------------------------------------------------------------------
    def run_once(self, name: str) -> FireResult:
        """Run schedule ``name`` now for the window ending now (``ladle schedule --once``).

        Takes the schedule's lease like a scheduled run (raises :class:`LeaseHeldError` if a run is
        in progress elsewhere) and does not move its cursor: scheduled fires still run.
        """
        schedule = self.schedule(name)
        with self._lease(schedule) as lease:
            if not lease.held:
                raise LeaseHeldError(
                    f"schedule '{name}' is running in another scheduler right now (lease '{_lease_name(schedule)}'); "
                    "try again when it has finished"
                )
            now = self.clock.now().replace(microsecond=0)
            result = run_fire(self._job(schedule), self.journal, self.clock, schedule, now, "manual", self.owner)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def status(self) -> list[ScheduleStatus]:
        """Each schedule with its next run time, progress and last run."""
        now = self.clock.now()
        states = self.journal.states()
        last = self.journal.last_runs()
        out = []
        for schedule in self.schedules:
            state = states.get(schedule.name)
            next_run = due_at(schedule, state) if state is not None else schedule.next_fire(now)
            out.append(ScheduleStatus(schedule, next_run, state, last.get(schedule.name)))
        return out


def _lease_name(schedule: Schedule) -> str:
    return f"schedule:{schedule.name}"


def _trigger(fire: datetime, plan: CatchUpPlan, state: ScheduleState) -> Trigger:
    if state.failures and fire == plan.fires[0]:
        return "retry"
    return "scheduled" if fire == plan.fires[-1] else "catch_up"
