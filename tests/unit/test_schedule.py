"""Schedule definitions, cron evaluation, catch-up planning and repo discovery (no I/O but files)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.errors import DefinitionError, RepoError, ScheduleNotFoundError
from ladle.registry.schedule_runs import ScheduleState
from ladle.schedule import (
    DAILY_ECONOMIC,
    DEFAULT_SCHEDULES,
    HOURLY_PRICES_WEATHER,
    PLATFORM_MONITORS,
    CronSchedule,
    ManualClock,
    Schedule,
    collect_schedules,
    due_at,
    find_schedule,
    plan_fires,
)
from ladle.schedule.plan import retry_at
from ladle.types import Float64

H = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- the platform's two default schedules -----------------------------------------------------------
def test_defaults_are_the_platform_schedules() -> None:
    assert [s.name for s in DEFAULT_SCHEDULES] == ["hourly_prices_weather", "daily_economic"]
    assert HOURLY_PRICES_WEATHER.feature_views == ("commodity_price_features", "weather_features")
    assert HOURLY_PRICES_WEATHER.lookback == timedelta(hours=2)
    assert DAILY_ECONOMIC.feature_views == ("economic_features",)
    assert DAILY_ECONOMIC.lookback == timedelta(days=7)


def test_hourly_default_fires_at_five_past_every_hour_with_two_hour_windows() -> None:
    start = utc(2026, 3, 2, 0, 0)
    fires = list(HOURLY_PRICES_WEATHER.cron.fires(start, start + timedelta(days=2)))
    assert fires == [utc(2026, 3, 2, 0, 5) + k * H for k in range(48)]
    assert HOURLY_PRICES_WEATHER.window(fires[3]) == (utc(2026, 3, 2, 1, 5), utc(2026, 3, 2, 3, 5))


def test_daily_default_fires_at_two_am_with_seven_day_windows() -> None:
    fires = list(DAILY_ECONOMIC.cron.fires(utc(2026, 3, 2, 2, 0), utc(2026, 3, 6, 2, 0)))
    assert fires == [utc(2026, 3, 3, 2), utc(2026, 3, 4, 2), utc(2026, 3, 5, 2), utc(2026, 3, 6, 2)]
    assert DAILY_ECONOMIC.window(fires[0]) == (utc(2026, 2, 24, 2), utc(2026, 3, 3, 2))


# -- cron evaluation ------------------------------------------------------------------------------
def test_next_after_is_strict_and_last_at_or_before_is_inclusive() -> None:
    cron = CronSchedule("5 * * * *")
    assert cron.next_after(utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 11, 5)
    assert cron.next_after(utc(2026, 1, 1, 10, 4, 59)) == utc(2026, 1, 1, 10, 5)
    assert cron.last_at_or_before(utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 10, 5)
    assert cron.last_at_or_before(utc(2026, 1, 1, 10, 4, 59)) == utc(2026, 1, 1, 9, 5)


def test_naive_times_are_utc() -> None:
    assert CronSchedule("0 2 * * *").next_after(datetime(2026, 1, 1, 3, 0)) == utc(2026, 1, 2, 2, 0)


def test_aliases_and_time_zones() -> None:
    assert CronSchedule("@daily").next_after(utc(2026, 1, 1, 0, 0)) == utc(2026, 1, 2)
    # 02:00 in New York (EST, UTC-5) is 07:00 UTC.
    assert CronSchedule("0 2 * * *", "America/New_York").next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 7)


def test_fall_back_runs_fixed_time_jobs_once_and_hourly_jobs_every_real_hour() -> None:
    day = (utc(2026, 10, 24, 23, 0), utc(2026, 10, 26, 0, 0))  # 25 Oct 2026 in London: 25 hours long
    daily = CronSchedule("30 1 * * *", "Europe/London")
    assert list(daily.fires(*day)) == [utc(2026, 10, 25, 0, 30)]  # 01:30 BST, not again at 01:30 GMT
    hourly = list(CronSchedule("5 * * * *", "Europe/London").fires(*day))
    assert len(hourly) == 25
    assert utc(2026, 10, 25, 0, 5) in hourly and utc(2026, 10, 25, 1, 5) in hourly  # 01:05 BST and 01:05 GMT


def test_spring_forward_runs_a_skipped_wall_time_after_the_gap() -> None:
    daily = CronSchedule("30 1 * * *", "Europe/London")  # 01:30 does not exist on 29 Mar 2026
    assert list(daily.fires(utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))) == [utc(2026, 3, 29, 1, 0)]


@pytest.mark.parametrize(
    "expression",
    ["", "5 * * *", "5 * * * * *", "61 * * * *", "every hour", "@reboot", "0 0 31 2 *"],
)
def test_bad_cron_expressions_are_definition_errors(expression: str) -> None:
    with pytest.raises(DefinitionError, match=r"cron expression|never fires"):
        CronSchedule(expression)


def test_unknown_time_zone_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="time zone 'Mars/Olympus' is unknown"):
        Schedule(name="s", cron="5 * * * *", feature_views=["v"], lookback=H, timezone="Mars/Olympus")


def test_newest_fires_is_bounded_however_long_the_gap() -> None:
    cron = CronSchedule("* * * * *")
    newest, more = cron.newest_fires(utc(2020, 1, 1), utc(2026, 1, 1), 3)  # six years of minutes
    assert newest == [utc(2025, 12, 31, 23, 58), utc(2025, 12, 31, 23, 59), utc(2026, 1, 1)]
    assert more


# -- Schedule validation ----------------------------------------------------------------------------
def _view() -> FeatureView:
    source = FileSource(name="src", path="x.parquet", timestamp_field="ts")
    entity = Entity(name="commodity", join_keys=["commodity_code"])
    return FeatureView(name="prices", source=source, entities=[entity], schema=[Field(name="p", dtype=Float64)])


def test_feature_views_may_be_given_as_objects() -> None:
    schedule = Schedule(name="s", cron="5 * * * *", feature_views=[_view(), "other"], lookback=H)
    assert schedule.feature_views == ("prices", "other")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "schedule name 'bad name' is invalid"),
        ({"feature_views": []}, "has no feature_views"),
        ({"feature_views": "prices"}, "must be a list"),
        ({"feature_views": ["a", "a"]}, "listed twice"),
        ({"lookback": timedelta(0)}, "lookback must be a positive"),
        ({"lookback": 3600}, "lookback must be a positive"),
        ({"catch_up": "none"}, "catch_up must be 'all' or 'latest'"),
        ({"max_catch_up": 0}, "max_catch_up must be a positive int"),
        ({"cron": "5 * *"}, "schedule 's': cron expression"),
    ],
)
def test_invalid_schedules_raise_definition_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "s", "cron": "5 * * * *", "feature_views": ["v"], "lookback": H, **kwargs}
    with pytest.raises(DefinitionError, match=message):
        Schedule(**args)  # type: ignore[arg-type]


def test_spec_round_trip() -> None:
    schedule = Schedule(
        name="s",
        cron="0 2 * * 1-5",
        feature_views=["a", "b"],
        lookback=timedelta(days=3),
        timezone="Europe/London",
        catch_up="latest",
        max_catch_up=5,
        description="d",
        tags={"t": "1"},
        owner="o",
    )
    assert Schedule.from_spec(schedule.to_spec()) == schedule
    assert schedule != Schedule(name="s", cron="0 2 * * 1-5", feature_views=["a", "b"], lookback=timedelta(days=3))


def test_find_schedule_names_the_declared_ones() -> None:
    assert find_schedule(DEFAULT_SCHEDULES, "daily_economic") is DAILY_ECONOMIC
    with pytest.raises(ScheduleNotFoundError, match=r"schedule 'dayly' does not exist.*daily_economic, hourly"):
        find_schedule(DEFAULT_SCHEDULES, "dayly")


# -- catch-up planning and retries --------------------------------------------------------------------
def test_all_missed_fires_are_planned_in_order() -> None:
    plan = plan_fires(HOURLY_PRICES_WEATHER, cursor=utc(2026, 1, 1, 10, 5), now=utc(2026, 1, 1, 14, 10))
    assert plan.fires == (
        utc(2026, 1, 1, 11, 5),
        utc(2026, 1, 1, 12, 5),
        utc(2026, 1, 1, 13, 5),
        utc(2026, 1, 1, 14, 5),
    )
    assert not plan.skipped


def test_catch_up_is_bounded_by_max_catch_up() -> None:
    schedule = Schedule(name="s", cron="5 * * * *", feature_views=["v"], lookback=H, max_catch_up=3)
    plan = plan_fires(schedule, cursor=utc(2026, 1, 1, 0, 5), now=utc(2026, 1, 1, 10, 0))
    assert plan.fires == (utc(2026, 1, 1, 7, 5), utc(2026, 1, 1, 8, 5), utc(2026, 1, 1, 9, 5))
    assert (plan.skipped_first, plan.skipped_last) == (utc(2026, 1, 1, 1, 5), utc(2026, 1, 1, 6, 5))


def test_catch_up_latest_runs_only_the_newest() -> None:
    schedule = Schedule(name="s", cron="5 * * * *", feature_views=["v"], lookback=H, catch_up="latest")
    plan = plan_fires(schedule, cursor=utc(2026, 1, 1, 0, 5), now=utc(2026, 1, 1, 3, 30))
    assert plan.fires == (utc(2026, 1, 1, 3, 5),)
    assert (plan.skipped_first, plan.skipped_last) == (utc(2026, 1, 1, 1, 5), utc(2026, 1, 1, 2, 5))
    on_time = plan_fires(schedule, cursor=utc(2026, 1, 1, 2, 5), now=utc(2026, 1, 1, 3, 30))
    assert on_time.fires == (utc(2026, 1, 1, 3, 5),) and not on_time.skipped


def test_due_at_waits_for_the_retry_time() -> None:
    cursor = utc(2026, 1, 1, 10, 5)
    assert due_at(HOURLY_PRICES_WEATHER, ScheduleState(cursor)) == utc(2026, 1, 1, 11, 5)
    backing_off = ScheduleState(cursor, failures=2, retry_at=utc(2026, 1, 1, 11, 9))
    assert due_at(HOURLY_PRICES_WEATHER, backing_off) == utc(2026, 1, 1, 11, 9)


def test_retry_backoff_doubles_up_to_the_cap_and_the_next_fire() -> None:
    now = utc(2026, 1, 1, 11, 5)
    base, cap = timedelta(minutes=1), timedelta(minutes=10)
    delays = [retry_at(HOURLY_PRICES_WEATHER, n, now, base, cap) - now for n in (1, 2, 3, 4, 5, 6)]
    assert delays == [timedelta(minutes=m) for m in (1, 2, 4, 8, 10, 10)]
    # Never later than the next fire, which retries anyway.
    assert retry_at(HOURLY_PRICES_WEATHER, 9, utc(2026, 1, 1, 11, 58), base, cap) == utc(2026, 1, 1, 12, 5)


def test_manual_clock_jumps_forward_only_when_sleeping() -> None:
    import threading

    clock = ManualClock(utc(2026, 1, 1, 12))
    stop = threading.Event()
    assert clock.sleep_until(utc(2026, 1, 1, 11), stop) and clock.now() == utc(2026, 1, 1, 12)
    assert clock.sleep_until(utc(2026, 1, 1, 13), stop) and clock.now() == utc(2026, 1, 1, 13)
    stop.set()
    assert not clock.sleep_until(utc(2026, 1, 1, 14), stop) and clock.now() == utc(2026, 1, 1, 13)


# -- discovery in a feature repo ------------------------------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
    return root


def test_collect_schedules_finds_objects_and_lists_across_files(tmp_path: Path) -> None:
    repo = _write(
        tmp_path,
        {
            "schedules.py": """
            from datetime import timedelta
            from ladle.schedule import DEFAULT_SCHEDULES, Schedule
            from helpers import LOOKBACK
            nightly = Schedule(name="nightly", cron="0 3 * * *", feature_views=["v"], lookback=LOOKBACK)
        """,
            "helpers.py": "from datetime import timedelta\nLOOKBACK = timedelta(hours=5)\n",
            "again.py": "from schedules import nightly  # the same object imported elsewhere is not a duplicate\n",
            ".hidden/ignored.py": "raise RuntimeError('hidden directories are not part of the repo')\n",
        },
    )
    found = collect_schedules(repo)
    assert [s.name for s in found] == ["daily_economic", "hourly_prices_weather", "nightly"]
    assert found[2].lookback == timedelta(hours=5)


def test_two_different_schedules_with_one_name_are_a_repo_error(tmp_path: Path) -> None:
    body = "from datetime import timedelta\nfrom ladle.schedule import Schedule\n"
    repo = _write(
        tmp_path,
        {
            "a.py": body
            + "s = Schedule(name='dup', cron='5 * * * *', feature_views=['v'], lookback=timedelta(hours=1))\n",
            "b.py": body
            + "s = Schedule(name='dup', cron='6 * * * *', feature_views=['v'], lookback=timedelta(hours=1))\n",
        },
    )
    with pytest.raises(RepoError, match="two different schedules are called 'dup'"):
        collect_schedules(repo)


def test_a_broken_repo_file_is_a_repo_error(tmp_path: Path) -> None:
    repo = _write(tmp_path, {"views.py": "import not_a_module_anywhere\n"})
    with pytest.raises(RepoError, match=r"views\.py:1: ModuleNotFoundError"):
        collect_schedules(repo)


def test_repos_with_the_same_file_names_do_not_see_each_other(tmp_path: Path) -> None:
    template = """
        from datetime import timedelta
        from ladle.schedule import Schedule
        s = Schedule(name="{name}", cron="5 * * * *", feature_views=["v"], lookback=timedelta(hours=1))
    """
    first = _write(tmp_path / "one", {"features.py": template.format(name="first")})
    second = _write(tmp_path / "two", {"features.py": template.format(name="second")})
    assert [s.name for s in collect_schedules(first)] == ["first"]
    assert [s.name for s in collect_schedules(second)] == ["second"]
    assert [s.name for s in collect_schedules(first)] == ["first"]


def test_the_platform_repo_declares_the_default_schedules() -> None:
    found = collect_schedules(Path(__file__).resolve().parents[2] / "feature_repo")
    if not found:
        pytest.skip("feature_repo declares no schedules yet (it should: from ladle.schedule import DEFAULT_SCHEDULES)")
    assert found == sorted([*DEFAULT_SCHEDULES, *PLATFORM_MONITORS], key=lambda s: s.name)


def test_a_year_long_gap_plans_only_the_bounded_newest_fires() -> None:
    plan = plan_fires(HOURLY_PRICES_WEATHER, utc(2025, 1, 1), utc(2026, 1, 1))
    assert len(plan.fires) == HOURLY_PRICES_WEATHER.max_catch_up == 168
    assert plan.fires[-1] == utc(2025, 12, 31, 23, 5) and plan.fires[0] == utc(2025, 12, 25, 0, 5)
    assert plan.skipped_first == utc(2025, 1, 1, 0, 5) and plan.skipped_last == utc(2025, 12, 24, 23, 5)
