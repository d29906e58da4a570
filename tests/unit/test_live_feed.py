"""The live feed: simulated continuations of the real series, reproducible, continuous, marked simulated."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.datasets import WTI_CODE, load_committed_extracts
from ladle.datasets.live import WalkModel, continue_closes, continue_macro
from ladle.datasets.live_weather import continue_weather
from ladle.errors import DefinitionError
from ladle.ingest.feed import LiveFeed, collect_feeds, feed_rows

ROOT = Path(__file__).resolve().parents[2]
EXTRACTS = load_committed_extracts(ROOT / "data")
NOW = datetime(2026, 3, 11, 15, 20, tzinfo=UTC)  # a Wednesday afternoon


def wti_prices() -> np.ndarray:
    return EXTRACTS["wti_daily"]["price"].to_numpy()


def test_walk_model_is_fitted_on_the_last_real_returns() -> None:
    prices = wti_prices()
    model = WalkModel.from_closes(prices)
    returns = np.diff(np.log(prices[-251:]))
    assert model.level == prices[-1] == 46.92
    assert model.drift == pytest.approx(returns.mean())
    assert model.vol == pytest.approx(returns.std(ddof=1))
    with pytest.raises(ValueError, match="at least 3"):
        WalkModel.from_closes([1.0, -2.0, 3.0])


def test_closes_continue_from_the_last_real_close_and_are_reproducible() -> None:
    model = WalkModel.from_closes(wti_prices())
    origin = NOW - timedelta(days=48)
    closes = continue_closes(WTI_CODE, model, origin, NOW, seed=5)
    assert closes.equals(continue_closes(WTI_CODE, model, origin, NOW, seed=5))
    assert not closes.equals(continue_closes(WTI_CODE, model, origin, NOW, seed=6))
    prices = closes["price"].to_numpy()
    assert prices[0] == model.level  # continuity: the path starts at the last real close
    assert closes["simulated"].to_pylist() == [True] * len(prices)
    stamps = closes["event_timestamp"].to_pylist()
    assert all(s.weekday() < 5 and (s.hour, s.minute) == (19, 30) for s in stamps)
    assert stamps[-2] < NOW <= stamps[-1]  # the next close is there for the intraday bridge
    # A later end continues the same path (what --follow relies on).
    longer = continue_closes(WTI_CODE, model, origin, NOW + timedelta(days=9), seed=5)
    assert longer.slice(0, len(prices)).equals(closes)
    # Statistically like the real series: the simulated daily log returns have its volatility.
    long_run = continue_closes(WTI_CODE, model, origin, origin + timedelta(days=4000), seed=5)
    returns = np.diff(np.log(long_run["price"].to_numpy()))[1:]
    assert returns.std(ddof=1) == pytest.approx(model.vol, rel=0.1)


def test_macro_continues_every_series_from_its_last_real_value() -> None:
    history = EXTRACTS["us_macro"]
    raw = continue_macro(history, NOW - timedelta(days=600), NOW, seed=1)
    assert raw.equals(continue_macro(history, NOW - timedelta(days=600), NOW, seed=1))
    for series in ("real_gdp", "cpi", "interest_rate", "unemployment_rate"):
        real = history.filter(pc.equal(history["series"], series)).sort_by("reference_period")
        fed = raw.filter(pc.equal(raw["series"], series)).sort_by("reference_period")
        assert fed["value"][0].as_py() == pytest.approx(real["value"][-1].as_py())
        assert fed["reference_period"][-1].as_py() == date(2026, 1, 1)  # the quarter holding NOW
        assert pc.min(fed["value"]).as_py() >= 0


def test_weather_continues_each_station_hourly_with_its_season_and_day() -> None:
    obs = EXTRACTS["nyc_weather"]
    origin = datetime(2026, 7, 1, tzinfo=UTC)
    sim = continue_weather(obs, origin, origin + timedelta(days=30), seed=3)
    assert sim.equals(continue_weather(obs, origin, origin + timedelta(days=30), seed=3))
    assert sorted(set(sim["location_id"].to_pylist())) == ["EWR", "JFK", "LGA"]
    jfk = sim.filter(pc.equal(sim["location_id"], "JFK"))
    assert jfk.num_rows == 30 * 24 + 1
    real = obs.filter(pc.equal(obs["location_id"], "JFK")).sort_by("event_timestamp")
    # continuity: the first simulated hour starts from the last real anomaly, pressure and wind
    assert jfk["pressure_hpa"][0].as_py() == pytest.approx(real["pressure_hpa"].drop_null()[-1].as_py(), abs=0.06)
    # July at JFK is warm, and afternoons (UTC 18-21) are warmer than nights (UTC 07-10)
    temps = jfk["temperature_c"].to_numpy()
    hours = np.array([t.hour for t in jfk["event_timestamp"].to_pylist()])
    assert 18 < temps.mean() < 30
    assert temps[(hours >= 18) & (hours <= 21)].mean() > temps[(hours >= 7) & (hours <= 10)].mean() + 2


def repo_feeds() -> dict[str, LiveFeed]:
    return {f.name: f for f in collect_feeds(ROOT / "feature_repo")}


def test_the_repos_feeds_are_reproducible_and_marked_simulated() -> None:
    feeds = repo_feeds()
    assert set(feeds) == {"commodity_prices_live", "economic_live", "weather_live"}
    for feed in feeds.values():
        origin, since = NOW - feed.warmup - feed.catch_up, NOW - feed.catch_up
        rows = feed_rows(feed, origin, since, NOW, seed=11)
        assert rows.num_rows > 0, feed.name
        assert rows.equals(feed_rows(feed, origin, since, NOW, seed=11)), feed.name
        assert not rows.equals(feed_rows(feed, origin, since, NOW, seed=12)), feed.name
        assert rows["simulated"].to_pylist() == [True] * rows.num_rows
        stamps = pc.cast(rows["event_timestamp"], pa.timestamp("us", tz="UTC"))
        assert pc.min(stamps).as_py() > since and pc.max(stamps).as_py() <= NOW


def test_the_price_feed_starts_at_the_last_real_close() -> None:
    from ladle.ingest.feed import FeedRequest

    feed = repo_feeds()["commodity_prices_live"]
    origin = NOW - feed.warmup - feed.catch_up
    rows = feed.compute(FeedRequest(origin, NOW, 11))
    wti = rows.filter(pc.equal(rows["commodity_code"], WTI_CODE))
    assert wti["current_price"][0].as_py() == wti_prices()[-1]
    assert wti["event_timestamp"][0].as_py() >= origin


FEED_REPO = """
from datetime import timedelta

import pyarrow as pa

from ladle import Bool, Entity, FeatureView, Field, FileSource, Float64, PushSource, ValueType
from ladle.ingest.feed import LiveFeed

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
source = FileSource(name="prices_source", path="data/prices/", timestamp_field="event_timestamp")
push = PushSource(name="prices_push", batch_source=source)
prices = FeatureView(name="prices", entities=[commodity], source=push, ttl=timedelta(days=1),
                     schema=[Field(name="price", dtype=Float64), Field(name="simulated", dtype=Bool)])


def hourly(request):
    hours = int((request.now - request.origin).total_seconds() // 3600)
    ts = [request.origin + timedelta(hours=h + 1) for h in range(hours)]
    return pa.table({"commodity_code": ["x"] * hours, "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                     "price": [float(request.seed + h) for h in range(hours)], "simulated": [True] * hours})


live = LiveFeed(name="live", push_source="prices_push", compute=hourly, warmup=timedelta(hours=2),
                catch_up=timedelta(hours=3))
"""


def test_ladle_feed_pushes_the_catch_up_rows_online(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text(
        "project: feed_test\nregistry: data/registry.db\nonline_store:\n  type: sqlite\n  path: data/online.db\n"
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(FEED_REPO))
    runner = CliRunner()
    applied = runner.invoke(cli, ["-c", str(tmp_path), "apply", "--skip-source-validation"])
    assert applied.exit_code == 0, applied.output
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    args = ["-c", str(tmp_path), "feed", "--now", hour.isoformat(), "--seed", "100", "-o", "json"]
    done = runner.invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert '"rows": 3' in done.output and '"simulated": true' in done.output
    store = FeatureStore(repo_path=tmp_path)
    online = store.get_online_features(
        features=["prices:price", "prices:simulated"], entity_rows=[{"commodity_code": "x"}]
    )
    # origin = hour - 5 h; the path's hours are priced 100..104; the last three are pushed, the newest is online
    assert online.to_dict() == {"commodity_code": ["x"], "price": [104.0], "simulated": [True]}
    store.close()
    assert not list((tmp_path / "data").glob("prices/*.parquet"))  # online only by default


def test_feed_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text("project: feed_test\nregistry: data/registry.db\n")
    (tmp_path / "repo.py").write_text(textwrap.dedent(FEED_REPO))
    runner = CliRunner()
    unknown = runner.invoke(cli, ["-c", str(tmp_path), "feed", "nope"])
    assert unknown.exit_code == 1 and "live feed 'nope' does not exist" in unknown.output
    assert "Traceback" not in unknown.output
    bad_time = runner.invoke(cli, ["-c", str(tmp_path), "feed", "--now", "yesterday"])
    assert bad_time.exit_code == 1 and "not an ISO 8601 time" in bad_time.output
    both = runner.invoke(cli, ["-c", str(tmp_path), "feed", "--follow", "--now", "2026-01-01"])
    assert both.exit_code == 1 and "--follow runs on the clock" in both.output
    with pytest.raises(DefinitionError, match="catch_up"):
        LiveFeed(name="x", push_source="p", compute=lambda r: pa.table({}), warmup=timedelta(0), catch_up=timedelta(0))


def feed_repo(tmp_path: Path) -> Path:
    (tmp_path / "feature_store.yaml").write_text(
        "project: feed_test\nregistry: data/registry.db\nonline_store:\n  type: sqlite\n  path: data/online.db\n"
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(FEED_REPO))
    applied = CliRunner().invoke(cli, ["-c", str(tmp_path), "apply", "--skip-source-validation"])
    assert applied.exit_code == 0, applied.output
    return tmp_path


def test_online_and_offline_also_appends_the_simulated_rows_offline(tmp_path: Path) -> None:
    repo = feed_repo(tmp_path)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    args = ["-c", str(repo), "feed", "--now", hour.isoformat(), "--to", "online_and_offline"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    offline = pa.concat_tables([pq.read_table(p) for p in sorted((repo / "data" / "prices").glob("*.parquet"))])
    assert offline.num_rows == 3 and offline["simulated"].to_pylist() == [True] * 3


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_follow_keeps_feeding_until_ctrl_c(tmp_path: Path) -> None:
    repo = feed_repo(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ladle", "-c", str(repo), "feed", "--follow", "--interval", "1", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT and its children inherit that (Python then installs no
        # KeyboardInterrupt handler): give the feed the terminal's Ctrl-C whatever ran the suite.
        preexec_fn=_default_sigint,  # noqa: PLW1509 (only restores a signal disposition before exec)
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda out=proc.stdout: lines.extend(iter(out.readline, "")), daemon=True),
        threading.Thread(target=lambda err=proc.stderr: errors.extend(iter(err.readline, "")), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        # The catch-up run and at least one follow-up, however slow the machine (polled, not slept).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum('"push_source": "prices_push"' in x for x in list(lines)) < 2:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=10)
    err = "".join(errors)
    assert proc.returncode == 0, err
    assert "".join(lines).count('"push_source": "prices_push"') >= 2
    assert "stopped" in err and "Traceback" not in err


def test_missing_raw_data_is_a_one_line_error(tmp_path: Path) -> None:
    repo = feed_repo(tmp_path)
    broken = (
        "\n\ndef no_data(request):\n    raise FileNotFoundError('missing data extracts in /nowhere')\n\n\n"
        "live = LiveFeed(name='live', push_source='prices_push', compute=no_data, warmup=timedelta(0),\n"
        "                catch_up=timedelta(hours=1))\n"
    )
    with (repo / "repo.py").open("a") as f:
        f.write(broken)
    done = CliRunner().invoke(cli, ["-c", str(repo), "feed"])
    assert done.exit_code == 1
    assert "DataSourceError: live feed 'live': missing data extracts in /nowhere" in done.output
    assert "Traceback" not in done.output
