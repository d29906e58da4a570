"""The scheduler loop on a real registry (SQLite file; PostgreSQL for the shared-registry test).

Time is simulated with :class:`ManualClock` (no real sleeping). Materialization is replaced by a
recorder here so that the assertions are about *when* and *which window*; the end-to-end tests in
tests/e2e/test_schedule_e2e.py run the real materializer and stores.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ladle.config import RegistryConfig, RepoConfig
from ladle.errors import LeaseHeldError, ScheduleNotFoundError
from ladle.schedule import (
    DEFAULT_SCHEDULES,
    HOURLY_PRICES_WEATHER,
    ManualClock,
    Schedule,
    Scheduler,
    SchedulerSettings,
)
from ladle.store import FeatureStore

H = timedelta(hours=1)
HOURLY_VIEWS = ("commodity_price_features", "weather_features")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_store(repo: Path, registry_path: str | None = None) -> FeatureStore:
    registry = RegistryConfig(path=registry_path or str(repo / "registry.db"), cache_ttl_seconds=0)
    return FeatureStore(config=RepoConfig(project="sched", registry=registry, repo_path=repo))


@dataclass
class Call:
    at: datetime  # simulated time of the call
    start: datetime
    end: datetime
    view: str
    began: float = 0.0  # real time, for overlap checks
    ended: float = 0.0
    owner: str = ""


@dataclass
class Recorder:
    """Stands in for ``store.materialize``: records each call; can fail or take real time."""

    clock: ManualClock
    owner: str = ""
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # view -> how many more calls fail
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, start: datetime, end: datetime, views: Sequence[str]) -> None:
        began = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        for view in views:
            with self.lock:
                self.calls.append(Call(self.clock.now(), start, end, view, began, time.perf_counter(), self.owner))
            if self.fail.get(view, 0) > 0:
                self.fail[view] -= 1
                raise RuntimeError(f"source of {view} is down")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    s = make_store(tmp_path)
    yield s
    s.registry.close()


def scheduler(
    store: FeatureStore, clock: ManualClock, schedules: Sequence[Schedule] = DEFAULT_SCHEDULES, **settings: timedelta
) -> tuple[Scheduler, Recorder]:
    recorder = Recorder(clock)
    sched = Scheduler(store, schedules, clock=clock, materialize=recorder, settings=SchedulerSettings(**settings))
    recorder.owner = sched.owner
    return sched, recorder


def hourly_fires(first: datetime, count: int) -> list[datetime]:
    return [first + k * H for k in range(count)]


# -- firing on time ---------------------------------------------------------------------------------
def test_default_jobs_fire_exactly_on_time_with_their_windows(store: FeatureStore) -> None:
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    sched, rec = scheduler(store, clock)
    sched.run(until=utc(2026, 3, 4, 0, 30))

    hourly = [c for c in rec.calls if c.view in HOURLY_VIEWS]
    expected = hourly_fires(utc(2026, 3, 2, 1, 5), 48)  # 01:05 on the 2nd .. 00:05 on the 4th
    for view in HOURLY_VIEWS:
        mine = [c for c in hourly if c.view == view]
        assert [c.at for c in mine] == expected  # fired at exactly :05, never late, never twice
        assert [(c.start, c.end) for c in mine] == [(t - 2 * H, t) for t in expected]
    daily = [c for c in rec.calls if c.view == "economic_features"]
    assert [c.at for c in daily] == [utc(2026, 3, 2, 2), utc(2026, 3, 3, 2)]
    assert [(c.start, c.end) for c in daily] == [
        (t - timedelta(days=7), t) for t in (utc(2026, 3, 2, 2), utc(2026, 3, 3, 2))
    ]

    runs = sched.journal.runs("hourly_prices_weather", limit=100)
    assert len(runs) == 48 and {r.status for r in runs} == {"succeeded"} and {r.trigger for r in runs} == {"scheduled"}
    assert runs[0].scheduled_for == expected[-1] and runs[0].window_start == expected[-1] - 2 * H
    assert runs[0].duration_seconds is not None and runs[0].duration_seconds >= 0
    assert runs[0].feature_views == HOURLY_VIEWS and runs[0].owner == sched.owner


# -- catch-up -----------------------------------------------------------------------------------------
def test_missed_fires_are_caught_up_in_order_after_downtime(store: FeatureStore) -> None:
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    first, rec1 = scheduler(store, clock)
    first.run(until=utc(2026, 3, 2, 1, 30))
    assert [c.end for c in rec1.calls] == [utc(2026, 3, 2, 1, 5)] * 2

    clock.set(utc(2026, 3, 3, 3, 10))  # the scheduler was down for a day; a new one starts
    second, rec2 = scheduler(store, clock)
    second.run(until=clock.now())

    hourly = [c for c in rec2.calls if c.view == "commodity_price_features"]
    missed = hourly_fires(utc(2026, 3, 2, 2, 5), 26)  # 02:05 on the 2nd .. 03:05 on the 3rd
    assert [c.end for c in hourly] == missed
    assert all(c.at == utc(2026, 3, 3, 3, 10) and c.start == c.end - 2 * H for c in hourly)
    assert [c.end for c in rec2.calls if c.view == "economic_features"] == [utc(2026, 3, 2, 2), utc(2026, 3, 3, 2)]

    runs = second.journal.runs("hourly_prices_weather", limit=100)
    assert [r.trigger for r in runs[:3]] == ["scheduled", "catch_up", "catch_up"]
    assert sorted(r.scheduled_for for r in runs) == [utc(2026, 3, 2, 1, 5), *missed]  # each fire exactly once


def test_catch_up_beyond_max_catch_up_is_skipped_loudly(store: FeatureStore, caplog: pytest.LogCaptureFixture) -> None:
    bounded = Schedule(name="bounded", cron="5 * * * *", feature_views=["v"], lookback=H, max_catch_up=2)
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    sched, rec = scheduler(store, clock, [bounded])
    sched.run(until=clock.now())  # first sighting
    clock.set(utc(2026, 3, 2, 6, 30))
    with caplog.at_level(logging.WARNING, logger="ladle.schedule"):
        sched.run(until=clock.now())
    assert [c.end for c in rec.calls] == [utc(2026, 3, 2, 5, 5), utc(2026, 3, 2, 6, 5)]
    skipped = [r for r in sched.journal.runs("bounded") if r.status == "skipped"]
    assert len(skipped) == 1
    assert "2026-03-02T01:05:00+00:00 .. 2026-03-02T04:05:00+00:00 skipped (max_catch_up=2)" in skipped[0].detail
    assert "ladle materialize 2026-03-02T00:05:00+00:00 2026-03-02T04:05:00+00:00 -v v" in skipped[0].detail
    assert any("skipped (max_catch_up=2)" in r.getMessage() for r in caplog.records)


def test_catch_up_latest_runs_only_the_newest_missed_fire(store: FeatureStore) -> None:
    latest = Schedule(name="latest", cron="5 * * * *", feature_views=["v"], lookback=H, catch_up="latest")
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    sched, rec = scheduler(store, clock, [latest])
    sched.run(until=clock.now())
    clock.set(utc(2026, 3, 2, 4, 30))
    sched.run(until=clock.now())
    assert [c.end for c in rec.calls] == [utc(2026, 3, 2, 4, 5)]
    assert [r.status for r in sched.journal.runs("latest")] == ["succeeded", "skipped"]


# -- failures -------------------------------------------------------------------------------------------
def test_a_failed_run_is_recorded_and_retried_with_backoff(store: FeatureStore) -> None:
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    sched, rec = scheduler(store, clock, [HOURLY_PRICES_WEATHER], retry_base=timedelta(minutes=1))
    rec.fail["commodity_price_features"] = 2
    sched.run(until=utc(2026, 3, 2, 2, 30))

    prices = [c for c in rec.calls if c.view == "commodity_price_features"]
    # 01:05 fails, retried at +1 min (fails), then at +2 min (succeeds); 02:05 runs on time.
    assert [c.at for c in prices] == [
        utc(2026, 3, 2, 1, 5),
        utc(2026, 3, 2, 1, 6),
        utc(2026, 3, 2, 1, 8),
        utc(2026, 3, 2, 2, 5),
    ]
    assert [c.end for c in prices] == [utc(2026, 3, 2, 1, 5)] * 3 + [utc(2026, 3, 2, 2, 5)]
    weather = [c for c in rec.calls if c.view == "weather_features"]
    assert len(weather) == 4  # one broken view does not stop the others

    runs = sched.journal.runs("hourly_prices_weather")
    assert [(r.scheduled_for.hour, r.status, r.trigger) for r in runs] == [
        (2, "succeeded", "scheduled"),
        (1, "succeeded", "retry"),
        (1, "failed", "retry"),
        (1, "failed", "scheduled"),
    ]
    assert "commodity_price_features: RuntimeError: source of commodity_price_features is down" in runs[-1].detail
    state = sched.journal.state("hourly_prices_weather")
    assert state is not None and state.failures == 0 and state.cursor == utc(2026, 3, 2, 2, 5)


# -- leases and several schedulers ----------------------------------------------------------------------
def test_a_held_lease_defers_the_fire_without_losing_it(store: FeatureStore) -> None:
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    sched, rec = scheduler(store, clock, [HOURLY_PRICES_WEATHER])
    sched.run(until=clock.now())
    assert store.registry.acquire_lease("schedule:hourly_prices_weather", "another-scheduler", 600)
    sched.run(until=utc(2026, 3, 2, 1, 5))
    assert rec.calls == []  # someone else is running it

    store.registry.release_lease("schedule:hourly_prices_weather", "another-scheduler")
    sched.run(until=utc(2026, 3, 2, 1, 10))
    assert [(c.at, c.end) for c in rec.calls] == [(utc(2026, 3, 2, 1, 5, 30), utc(2026, 3, 2, 1, 5))] * 2


def test_stop_finishes_the_current_run_and_releases_the_lease(store: FeatureStore, tmp_path: Path) -> None:
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    sched, rec = scheduler(store, clock, [HOURLY_PRICES_WEATHER])
    sched.run(until=clock.now())
    clock.set(utc(2026, 3, 2, 5, 30))  # four fires to catch up
    stop = threading.Event()
    original = sched.materialize
    assert original is not None

    def stop_during_first_run(start: datetime, end: datetime, views: Sequence[str]) -> None:
        stop.set()  # as SIGTERM would
        original(start, end, views)

    sched.materialize = stop_during_first_run
    sched.run(stop)
    assert [c.end for c in rec.calls] == [utc(2026, 3, 2, 1, 5)] * 2  # both views of the running fire, nothing more
    other = make_store(tmp_path)
    assert other.registry.acquire_lease("schedule:hourly_prices_weather", "another-scheduler", 60)
    other.registry.close()


def test_a_long_run_keeps_its_lease(store: FeatureStore, tmp_path: Path) -> None:
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    sched, _ = scheduler(store, clock, [HOURLY_PRICES_WEATHER], lease_ttl=timedelta(seconds=0.3))
    other = make_store(tmp_path)
    stolen: list[bool] = []

    def slow(start: datetime, end: datetime, views: Sequence[str]) -> None:
        time.sleep(0.45)  # longer than the lease ttl: only renewal keeps the lease
        stolen.append(other.registry.acquire_lease("schedule:hourly_prices_weather", "intruder", 60))

    sched.materialize = slow
    sched.run_once("hourly_prices_weather")
    other.registry.close()
    assert stolen == [False, False]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_schedulers_sharing_a_registry_run_each_fire_exactly_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else str(tmp_path / "shared.db")
    start, until = utc(2026, 3, 2, 0, 30), utc(2026, 3, 2, 12, 30)
    stores = [make_store(tmp_path, url) for _ in range(2)]
    pairs = [scheduler(s, ManualClock(start)) for s in stores]  # two hosts, clocks in sync
    for _, rec in pairs:
        rec.delay = 0.002  # widen each run so the two schedulers really contend
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(sched: Scheduler) -> None:
        try:
            barrier.wait()
            sched.run(until=until)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s, _ in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.registry.close()
    assert not errors

    calls = [c for _, rec in pairs for c in rec.calls]
    expected = hourly_fires(utc(2026, 3, 2, 1, 5), 12)
    for view in HOURLY_VIEWS:
        assert sorted(c.end for c in calls if c.view == view) == expected  # every fire, exactly once
    assert sorted(c.end for c in calls if c.view == "economic_features") == [utc(2026, 3, 2, 2)]
    hourly = sorted((c for c in calls if c.view in HOURLY_VIEWS), key=lambda c: c.began)
    for before, after in itertools.pairwise(hourly):
        if before.end != after.end:
            assert before.ended <= after.began, "two runs of one schedule overlapped"


# -- one-off runs -----------------------------------------------------------------------------------------
def test_run_once_runs_now_without_moving_the_schedule(store: FeatureStore) -> None:
    clock = ManualClock(utc(2026, 3, 2, 10, 17))
    sched, rec = scheduler(store, clock)
    result = sched.run_once("hourly_prices_weather")
    assert result.ok and result.trigger == "manual"
    assert [(c.view, c.start, c.end) for c in rec.calls] == [
        (v, utc(2026, 3, 2, 8, 17), utc(2026, 3, 2, 10, 17)) for v in HOURLY_VIEWS
    ]
    assert sched.journal.state("hourly_prices_weather") is None  # scheduled fires are unaffected
    assert [r.trigger for r in sched.journal.runs("hourly_prices_weather")] == ["manual"]


def test_run_once_refuses_while_another_run_holds_the_lease(store: FeatureStore) -> None:
    sched, rec = scheduler(store, ManualClock(utc(2026, 3, 2, 10, 17)))
    assert store.registry.acquire_lease("schedule:daily_economic", "another-scheduler", 600)
    with pytest.raises(LeaseHeldError, match="'daily_economic' is running in another scheduler"):
        sched.run_once("daily_economic")
    assert rec.calls == []
    with pytest.raises(ScheduleNotFoundError, match="schedule 'nope' does not exist in project 'sched'"):
        sched.run_once("nope")


def test_status_shows_next_run_and_last_result(store: FeatureStore) -> None:
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    sched, _ = scheduler(store, clock)
    before = {s.schedule.name: s for s in sched.status()}
    assert (
        before["hourly_prices_weather"].next_run == utc(2026, 3, 2, 1, 5) and before["daily_economic"].last_run is None
    )
    sched.run(until=utc(2026, 3, 2, 1, 30))
    after = {s.schedule.name: s.to_dict() for s in sched.status()}
    assert after["hourly_prices_weather"]["next_run"] == "2026-03-02T02:05:00+00:00"
    assert after["hourly_prices_weather"]["last_run"]["status"] == "succeeded"
    assert after["daily_economic"]["next_run"] == "2026-03-02T02:00:00+00:00"
