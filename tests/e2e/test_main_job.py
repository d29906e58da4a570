"""The README's main job, end to end on the embedded defaults: ingest, apply, materialize, feed, query.

Runs the real CLI on a copy of feature_repo with the committed real data, then asks the original
user's SDK snippet: the historical query over 2013 must return the real values (checked here against
the raw data, recomputed independently), the online query fresh values marked simulated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ladle import FeatureStore, FieldStatus

ROOT = Path(__file__).resolve().parents[2]
USER_DATES = ["2013-06-01", "2013-09-01", "2013-12-01"]
TTL = {
    "commodity_price_features": timedelta(days=3),
    "economic_features": timedelta(days=120),
    "weather_features": timedelta(hours=6),
}


def ladle(repo: Path, *args: str) -> str:
    env = {**os.environ, "LADLE_DATA_DIR": str(ROOT / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "ladle", "-c", str(repo), *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, f"ladle {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("main_job") / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", path, ignore=shutil.ignore_patterns("data"))
    ladle(path, "ingest")
    ladle(path, "apply")
    ladle(path, "materialize-incremental", "now")
    ladle(path, "feed")
    return path


def raw_wti_closes() -> pd.Series:
    """WTI daily closes from the installed arch package (else the committed extract), at 19:30 UTC."""
    try:
        from arch.data import wti

        frame = wti.load()["DCOILWTICO"].dropna()
        days = pd.to_datetime(frame.index)
        values = frame.to_numpy(dtype=float)
    except ImportError:
        table = pq.read_table(ROOT / "data" / "wti_daily.parquet").to_pandas()
        days = table["event_timestamp"].dt.tz_convert(None).dt.normalize()
        values = table["price"].to_numpy(dtype=float)
    stamps = pd.DatetimeIndex(days).tz_localize("UTC") + pd.Timedelta(hours=19, minutes=30)
    return pd.Series(values, index=stamps).sort_index()


def wilder_rsi(closes: pd.Series, n: int = 14) -> pd.Series:
    """RSI by the docs' definition: simple means of the first n changes, then (n-1)/n smoothing."""
    change = closes.diff().to_numpy()[1:]
    gain, loss = np.maximum(change, 0.0), np.maximum(-change, 0.0)
    out = np.full(len(closes), np.nan)
    avg_gain, avg_loss = gain[:n].mean(), loss[:n].mean()
    out[n] = 100 * avg_gain / (avg_gain + avg_loss)
    for i in range(n, len(change)):
        avg_gain = ((n - 1) * avg_gain + gain[i]) / n
        avg_loss = ((n - 1) * avg_loss + loss[i]) / n
        out[i + 1] = 100 * avg_gain / (avg_gain + avg_loss)
    return pd.Series(out, index=closes.index)


@pytest.mark.slow
def test_the_users_training_query_returns_the_real_2013_values(repo: Path) -> None:
    store = FeatureStore(repo_path=repo)
    entity_df = pd.DataFrame(
        {"commodity_code": ["crude_oil_wti"] * 3, "event_timestamp": pd.to_datetime(USER_DATES, utc=True)}
    )
    training = store.get_historical_features(
        entity_df=entity_df,
        features=[
            "commodity_price_features:current_price",
            "commodity_price_features:ma_7d",
            "commodity_price_features:rsi_14d",
            "commodity_price_features:simulated",
        ],
    ).to_df()
    store.close()
    closes = raw_wti_closes()
    rsi = wilder_rsi(closes)
    for row, day in zip(training.itertuples(), USER_DATES, strict=True):
        asked = pd.Timestamp(day, tz="UTC")
        close_at = closes.index[closes.index <= asked][-1]  # the latest close known at the entity time
        week = closes[(closes.index > close_at - pd.Timedelta(days=7)) & (closes.index <= close_at)]
        assert row.current_price == pytest.approx(closes[close_at]), day
        assert row.ma_7d == pytest.approx(week.mean()), day
        assert row.rsi_14d == pytest.approx(rsi[close_at], abs=1e-6), day
        assert row.simulated == False  # noqa: E712 - a real close, and it says so


@pytest.mark.slow
def test_prices_and_macro_join_on_their_real_dates(repo: Path) -> None:
    gdp = pq.read_table(ROOT / "data" / "us_macro.parquet").to_pandas()
    gdp = gdp[gdp["series"] == "real_gdp"].set_index("reference_period")["value"]
    store = FeatureStore(repo_path=repo)
    entity_df = pd.DataFrame(
        {
            "commodity_code": "crude_oil_wti",
            "country_code": "US",
            "event_timestamp": pd.to_datetime(["2009-05-01 13:00", "2009-05-01 14:00", "2013-06-01 00:00"], utc=True),
        }
    )
    rows = store.get_historical_features(
        entity_df=entity_df, features=["commodity_price_features:current_price", "economic_features:gdp_growth"]
    ).to_df()
    store.close()
    q3, q4, q1 = (gdp[pd.Timestamp(d).date()] for d in ("2008-07-01", "2008-10-01", "2009-01-01"))
    # 2009Q1's advance estimate is modelled at 2009-05-01 13:30 UTC: half an hour before, 2008Q4 is the latest
    assert rows["gdp_growth"][0] == pytest.approx(100 * ((q4 / q3) ** 4 - 1))
    assert rows["gdp_growth"][1] == pytest.approx(100 * ((q1 / q4) ** 4 - 1))
    # in 2013 the latest release is from October 2009, outside the 120-day ttl: no figure, not a stale one
    assert np.isnan(rows["gdp_growth"][2]) and rows["current_price"][2] == pytest.approx(91.93)


@pytest.mark.slow
def test_the_users_online_query_returns_fresh_values_marked_simulated(repo: Path) -> None:
    store = FeatureStore(repo_path=repo)
    response = store.get_online_features(
        features=[
            "commodity_price_features:current_price",
            "commodity_price_features:price_change_24h",
            "commodity_price_features:volatility_7d",
            "commodity_price_features:simulated",
        ],
        entity_rows=pd.DataFrame({"commodity_code": ["crude_oil_wti", "natural_gas"]}),
    )
    store.close()
    result = response.to_dict()
    assert result["commodity_code"] == ["crude_oil_wti", "natural_gas"]
    for name in ("current_price", "price_change_24h", "volatility_7d"):
        assert all(isinstance(v, float) and np.isfinite(v) for v in result[name]), (name, result[name])
    assert result["simulated"] == [True, True]
    assert all(s == [FieldStatus.PRESENT] * 2 for s in response.statuses_dict().values())
    now = datetime.now(UTC)
    for stamp in response.event_timestamps[response.feature_names.index("current_price")]:
        age = now - datetime.fromtimestamp(stamp / 1e6, UTC)
        assert timedelta(0) <= age <= TTL["commodity_price_features"]
    # continuity: the simulated WTI stays in the real series' range, near its last real close
    assert 46.92 / 3 < result["current_price"][0] < 46.92 * 3


@pytest.mark.slow
def test_every_view_is_fresh_online_and_marked_simulated(repo: Path) -> None:
    store = FeatureStore(repo_path=repo)
    for view, key, entity in (
        ("commodity_price_features", "commodity_code", "crude_oil_wti"),
        ("economic_features", "country_code", "US"),
        ("weather_features", "location_id", "JFK"),
    ):
        response = store.get_online_features(features=[f"{view}:simulated"], entity_rows=[{key: entity}])
        assert response.to_dict()["simulated"] == [True], view
        stamp = response.event_timestamps[response.feature_names.index("simulated")][0]
        assert datetime.now(UTC) - datetime.fromtimestamp(stamp / 1e6, UTC) <= TTL[view], view
    statuses = store.get_online_features(
        features="price_model_v1",
        entity_rows=[{"commodity_code": "crude_oil_wti", "country_code": "US", "location_id": "JFK"}],
    ).statuses_dict()
    assert all(s == [FieldStatus.PRESENT] for s in statuses.values()), statuses
    store.close()


@pytest.mark.slow
def test_the_offline_store_holds_real_history_only(repo: Path) -> None:
    for view in ("commodity_prices", "economic", "weather"):
        table = pq.read_table(repo / "data" / "offline" / view).to_pandas()
        assert not table["simulated"].any(), view  # the feed pushes online only by default
        assert table["event_timestamp"].max() <= pd.Timestamp("2019-01-03 19:30", tz="UTC"), view


@pytest.mark.slow
def test_ingest_is_idempotent(repo: Path) -> None:
    def rows() -> int:
        files = sorted((repo / "data" / "offline").rglob("*.parquet"))
        return sum(pq.read_metadata(f).num_rows for f in files)

    before = rows()
    ladle(repo, "ingest")
    assert rows() == before


@pytest.mark.slow
def test_the_server_answers_the_documented_curl_request(repo: Path) -> None:
    from starlette.testclient import TestClient

    from ladle.server.rest import create_app

    store = FeatureStore(repo_path=repo)
    expected = store.get_online_features(
        features=["commodity_price_features:current_price"], entity_rows=[{"commodity_code": "crude_oil_wti"}]
    ).to_dict()["current_price"][0]
    body = {
        "features": ["commodity_price_features:current_price", "commodity_price_features:price_change_24h"],
        "entities": {"commodity_code": ["crude_oil_wti"]},
    }
    with TestClient(create_app(store)) as client:
        reply = client.post("/get-online-features", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["metadata"]["feature_names"] == ["commodity_code", "current_price", "price_change_24h"]
    assert data["results"][0]["values"] == ["crude_oil_wti"]
    assert data["results"][1]["values"][0] == pytest.approx(expected)
    assert data["results"][1]["statuses"] == ["PRESENT"]
    store.close()
