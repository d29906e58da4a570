"""``ladle schedule`` end to end: real SQLite registry and online store, Parquet + DuckDB offline,
the real materializer, and the real CLI process (SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ladle.cli.main import cli
from ladle.repo.loader import load_repo
from ladle.schedule import ManualClock, Scheduler, collect_schedules
from ladle.store import FeatureStore


@pytest.fixture
def materializer() -> None:
    pytest.importorskip(
        "ladle.materialize.local", reason="the materializer (src/ladle/materialize/local.py) is missing"
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


#: The platform's three views on Parquet files (data/prices, weather, economic.parquet); shared with
#: tests/deploy/test_jobs_run.py, which adds feature_repo/schedules.py instead.
VIEWS = """
    from datetime import timedelta
    from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType

    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    location = Entity(name="location", join_keys=["location_id"], value_type=ValueType.STRING)
    country = Entity(name="country", join_keys=["country_code"], value_type=ValueType.STRING)

    def source(name):
        return FileSource(name=name, path=f"data/{name}.parquet", timestamp_field="event_timestamp")

    commodity_price_features = FeatureView(
        name="commodity_price_features", entities=[commodity], ttl=timedelta(0),
        schema=[Field(name="current_price", dtype=Float64)], source=source("prices"))
    weather_features = FeatureView(
        name="weather_features", entities=[location], ttl=timedelta(0),
        schema=[Field(name="temperature_avg", dtype=Float64)], source=source("weather"))
    economic_features = FeatureView(
        name="economic_features", entities=[country], ttl=timedelta(0),
        schema=[Field(name="gdp_growth", dtype=Float64)], source=source("economic"))
"""
REPO = VIEWS + "    from ladle.schedule import DEFAULT_SCHEDULES\n"


def table(key: str, feature: str, rows: list[tuple[str, datetime, float]]) -> pa.Table:
    return pa.table(
        {
            key: [r[0] for r in rows],
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            feature: [r[2] for r in rows],
        }
    )


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """The platform's three views on small Parquet files, applied, with DEFAULT_SCHEDULES declared."""
    (tmp_path / "data").mkdir()
    (tmp_path / "feature_store.yaml").write_text(
        "project: sched_e2e\nregistry:\n  path: data/registry.db\n  cache_ttl_seconds: 0\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\noffline_store:\n  type: duckdb\n"
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(REPO))
    prices = [
        ("wti", utc(2026, 3, 2, 0, 30), 1.0),  # in the 01:05 window
        ("gold", utc(2026, 3, 2, 1, 0), 3.0),  # in the 01:05 window
        ("wti", utc(2026, 3, 2, 1, 50), 2.0),  # only in the 02:05 window
        ("brent", utc(2026, 3, 2, 3, 30), 4.0),  # after every fire the tests run
    ]
    pq.write_table(table("commodity_code", "current_price", prices), tmp_path / "data" / "prices.parquet")
    weather = [("JFK", utc(2026, 3, 2, 0, 45), 10.0)]
    pq.write_table(table("location_id", "temperature_avg", weather), tmp_path / "data" / "weather.parquet")
    economic = [("US", utc(2026, 2, 28), 2.5), ("DE", utc(2026, 2, 1), 0.5)]  # DE is older than the 7-day window
    pq.write_table(table("country_code", "gdp_growth", economic), tmp_path / "data" / "economic.parquet")
    store = FeatureStore(repo_path=tmp_path)
    store.apply(load_repo(tmp_path))
    store.close()
    yield tmp_path


def online(store: FeatureStore, ref: str, key: str, ids: list[str]) -> list[object]:
    response = store.get_online_features([ref], [{key: i} for i in ids]).to_dict()
    return list(response[ref.split(":")[1]])


def test_scheduled_fires_materialize_their_windows_into_the_online_store(repo: Path, materializer: None) -> None:
    store = FeatureStore(repo_path=repo)
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    scheduler = Scheduler(store, collect_schedules(repo), clock=clock)
    scheduler.check_views()

    scheduler.run(until=utc(2026, 3, 2, 1, 30))  # fire 01:05: window [23:05, 01:05]
    prices = "commodity_price_features:current_price"
    assert online(store, prices, "commodity_code", ["wti", "gold", "brent"]) == [1.0, 3.0, None]
    assert online(store, "weather_features:temperature_avg", "location_id", ["JFK"]) == [10.0]
    assert online(store, "economic_features:gdp_growth", "country_code", ["US"]) == [None]

    scheduler.run(until=utc(2026, 3, 2, 2, 30))  # daily 02:00 (last 7 days), hourly 02:05
    assert online(store, prices, "commodity_code", ["wti", "gold", "brent"]) == [2.0, 3.0, None]
    assert online(store, "economic_features:gdp_growth", "country_code", ["US", "DE"]) == [2.5, None]

    runs = scheduler.journal.runs(limit=10)
    assert [(r.schedule, r.scheduled_for, r.status) for r in runs] == [
        ("hourly_prices_weather", utc(2026, 3, 2, 2, 5), "succeeded"),
        ("daily_economic", utc(2026, 3, 2, 2, 0), "succeeded"),
        ("hourly_prices_weather", utc(2026, 3, 2, 1, 5), "succeeded"),
    ]
    assert store.registry.watermark("commodity_price_features") == utc(2026, 3, 2, 2, 5)
    scheduler.close()
    store.close()


def test_catch_up_after_downtime_leaves_the_newest_values_online(repo: Path, materializer: None) -> None:
    store = FeatureStore(repo_path=repo)
    clock = ManualClock(utc(2026, 3, 2, 0, 30))
    scheduler = Scheduler(store, collect_schedules(repo), clock=clock)
    scheduler.run(until=clock.now())  # first sighting at 00:30, then down until 04:00
    clock.set(utc(2026, 3, 2, 4, 0))
    scheduler.run(until=clock.now())
    fires = [r.scheduled_for for r in reversed(scheduler.journal.runs("hourly_prices_weather"))]
    assert fires == [utc(2026, 3, 2, h, 5) for h in (1, 2, 3)]
    assert online(store, "commodity_price_features:current_price", "commodity_code", ["wti", "gold", "brent"]) == [
        2.0,
        3.0,
        None,  # brent's 03:30 row is after the last fire (03:05)
    ]
    scheduler.close()
    store.close()


def test_cli_once_runs_the_named_schedule_now(repo: Path, materializer: None) -> None:
    result = CliRunner().invoke(cli, ["--chdir", str(repo), "schedule", "--once", "daily_economic", "-o", "json"])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)
    assert run["schedule"] == "daily_economic" and run["trigger"] == "manual" and run["status"] == "succeeded"
    end = datetime.fromisoformat(run["window_end"])
    assert abs((datetime.now(UTC) - end).total_seconds()) < 60
    assert datetime.fromisoformat(run["window_start"]) == end - timedelta(days=7)


def test_cli_stops_cleanly_on_sigterm(repo: Path) -> None:
    ladle = Path(sys.executable).with_name("ladle")
    proc = subprocess.Popen(
        [str(ladle), "--chdir", str(repo), "schedule"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once the loop is about to start
        assert "2 schedule(s)" in banner and "Stop with Ctrl-C or SIGTERM" in banner
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert time.monotonic() - began < 10
        assert "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_each_scheduled_view_run_is_observed_in_the_duration_histogram(repo: Path, materializer: None) -> None:
    from prometheus_client import REGISTRY

    def count(view: str) -> float:
        return REGISTRY.get_sample_value("feast_materialization_duration_count", {"feature_view": view}) or 0.0

    views = ("commodity_price_features", "weather_features", "economic_features")
    before = {v: count(v) for v in views}
    store = FeatureStore(repo_path=repo)
    scheduler = Scheduler(store, collect_schedules(repo), clock=ManualClock(utc(2026, 3, 2, 0, 30)))
    scheduler.run(until=utc(2026, 3, 2, 3, 30))  # hourly at 01:05, 02:05, 03:05; daily at 02:00
    assert [count(v) - before[v] for v in views] == [3, 3, 1]
    scheduler.close()
    store.close()
