"""Commodity price features and the tick simulator, checked against independent computations.

References: pandas time-based rolling windows and ``merge_asof`` for the windowed features,
a brute-force per-tick loop for volatility, and TA-Lib's published ``RSI`` for Wilder's RSI.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ladle.datasets import CLOSE_TIME_UTC, load_committed_extracts
from ladle.transforms import commodity_price_features, simulate_ticks

talib = pytest.importorskip("talib")

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DAY = pd.Timedelta(days=1)


def make_ticks(seed: int = 7, n: int = 1500, codes: tuple[str, ...] = ("gold", "brent")) -> pd.DataFrame:
    """Irregular ticks (1 min to 4 h apart) over ~60 days, GBM prices, some NULL volumes."""
    rng = np.random.default_rng(seed)
    frames = []
    for code in codes:
        gaps = rng.integers(60, 4 * 3600, n)
        ts = pd.Timestamp("2013-01-01 00:17", tz="UTC") + pd.to_timedelta(np.cumsum(gaps), "s")
        price = 80 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
        volume = rng.gamma(2.0, 50.0, n)
        volume[rng.random(n) < 0.05] = np.nan
        frames.append(pd.DataFrame({"commodity_code": code, "event_timestamp": ts, "price": price, "volume": volume}))
    return pd.concat(frames, ignore_index=True)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    return make_ticks()


@pytest.fixture(scope="module")
def features(ticks: pd.DataFrame) -> pd.DataFrame:
    out = commodity_price_features(to_arrow(ticks)).to_pandas()
    expected = ticks.sort_values(["commodity_code", "event_timestamp"]).reset_index(drop=True)
    assert len(out) == len(expected)
    assert (out["event_timestamp"] == expected["event_timestamp"]).all()
    return out


def per_code(ticks: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {code: g.set_index("event_timestamp").sort_index() for code, g in ticks.groupby("commodity_code", sort=True)}


def test_schema_and_created(features: pd.DataFrame) -> None:
    assert list(features.columns) == [
        "commodity_code",
        "event_timestamp",
        "created",
        "current_price",
        "price_change_1h",
        "price_change_24h",
        "volume_24h",
        "volatility_7d",
        "ma_7d",
        "ma_30d",
        "rsi_14d",
    ]
    assert (features["created"] == features["event_timestamp"]).all()
    assert str(features["event_timestamp"].dt.tz) == "UTC"


def test_rolling_windows_match_pandas(ticks: pd.DataFrame, features: pd.DataFrame) -> None:
    expected = []
    for _, g in per_code(ticks).items():
        expected.append(
            pd.DataFrame(
                {
                    "current_price": g["price"],
                    "volume_24h": g["volume"].rolling("24h").sum(),
                    "ma_7d": g["price"].rolling("7D").mean(),
                    "ma_30d": g["price"].rolling("30D").mean(),
                }
            )
        )
    ref = pd.concat(expected).reset_index(drop=True)
    for col in ref.columns:
        np.testing.assert_allclose(features[col], ref[col], rtol=1e-10, err_msg=col)


@pytest.mark.parametrize(("column", "hours"), [("price_change_1h", 1), ("price_change_24h", 24)])
def test_price_changes_match_merge_asof(ticks: pd.DataFrame, features: pd.DataFrame, column: str, hours: int) -> None:
    expected = []
    for _, g in per_code(ticks).items():
        left = pd.DataFrame({"key": g.index - pd.Timedelta(hours=hours), "price": g["price"].to_numpy()})
        right = pd.DataFrame({"key": g.index, "past": g["price"].to_numpy()})
        merged = pd.merge_asof(left, right, on="key", direction="backward", allow_exact_matches=True)
        expected.append(100 * (merged["price"] / merged["past"] - 1))
    ref = pd.concat(expected, ignore_index=True)
    assert ref.isna().sum() > 0  # the first hour/day has no reference price
    np.testing.assert_allclose(features[column], ref, rtol=1e-12)


def session_closes(g: pd.DataFrame, close: time) -> pd.Series:
    """Last price per session; a session ends at ``close`` (inclusive) every day."""
    offset = pd.Timedelta(hours=close.hour, minutes=close.minute)
    label = (g.index - offset - pd.Timedelta(microseconds=1)).floor("D")
    return g["price"].groupby(label).last()


def brute_force(g: pd.DataFrame, close: time, at: int) -> tuple[float, float]:
    """(volatility_7d, rsi_14d) of tick ``at`` from first principles."""
    offset = pd.Timedelta(hours=close.hour, minutes=close.minute)
    t = g.index[at]
    session = (t - offset - pd.Timedelta(microseconds=1)).floor("D")
    closes = session_closes(g.iloc[: at + 1], close)
    completed = closes[closes.index < session]
    series = pd.concat([completed, pd.Series([g["price"].iloc[at]], index=[session])])
    logret = np.log(series).diff()
    window = logret[logret.index > session - 7 * DAY].dropna()
    vol = float(np.std(window, ddof=1) * np.sqrt(252) * 100) if len(window) >= 2 else np.nan
    rsi = talib.RSI(series.to_numpy(dtype=float), timeperiod=14)[-1]
    return vol, float(rsi)


def test_volatility_and_rsi_match_brute_force(ticks: pd.DataFrame, features: pd.DataFrame) -> None:
    rng = np.random.default_rng(1)
    for code, g in per_code(ticks).items():
        rows = features[features["commodity_code"] == code].reset_index(drop=True)
        for at in np.sort(rng.choice(len(g), 60, replace=False)):
            vol, rsi = brute_force(g, time(0), int(at))
            got = rows.iloc[int(at)]
            np.testing.assert_allclose(got["volatility_7d"], vol, rtol=1e-9, equal_nan=True)
            np.testing.assert_allclose(got["rsi_14d"], rsi, rtol=1e-9, equal_nan=True)
    assert features["rsi_14d"].notna().sum() > 0.5 * len(features)


def test_rsi_on_real_wti_matches_talib() -> None:
    """8,321 real closes: spans several of the smoothing blocks, and every tick is a close."""
    wti = load_committed_extracts(DATA_DIR)["wti_daily"]
    out = commodity_price_features(wti, session_close=CLOSE_TIME_UTC).to_pandas()
    closes = wti["price"].to_numpy()
    np.testing.assert_allclose(out["rsi_14d"], talib.RSI(closes, timeperiod=14), rtol=1e-9, equal_nan=True)
    series = pd.Series(closes, index=wti["event_timestamp"].to_pandas())
    vol = np.log(series).diff().rolling("7D").std() * np.sqrt(252) * 100
    np.testing.assert_allclose(out["volatility_7d"], vol.to_numpy(), rtol=1e-9, equal_nan=True)


def test_no_look_ahead(ticks: pd.DataFrame, features: pd.DataFrame) -> None:
    """Rows at or before a cut are identical when the future is dropped or rewritten."""
    cut = ticks["event_timestamp"].quantile(0.6)
    past = ticks[ticks["event_timestamp"] <= cut]
    rewritten = ticks.copy()
    future = rewritten["event_timestamp"] > cut
    rewritten.loc[future, "price"] *= 3.0
    rewritten.loc[future, "volume"] = 1e9
    for variant in (past, rewritten):
        out = commodity_price_features(to_arrow(variant)).to_pandas()
        mask = out["event_timestamp"] <= cut
        pd.testing.assert_frame_equal(
            out[mask].reset_index(drop=True),
            features[features["event_timestamp"] <= cut].reset_index(drop=True),
            rtol=1e-9,
        )


def test_invalid_prices_dropped_and_ties_share_windows() -> None:
    t0 = datetime(2013, 3, 1, 12, tzinfo=UTC)
    hours = [0, 0.5, 1, 1, 2, 3, 2.5]
    frame = pd.DataFrame(
        {
            "commodity_code": ["x"] * 7,
            "event_timestamp": [t0 + timedelta(hours=h) for h in hours],
            "price": [10.0, -1.0, 11.0, 12.0, np.nan, 0.0, 15.0],
            "volume": [1.0, 100.0, 2.0, 3.0, 100.0, 100.0, None],
        }
    )
    out = commodity_price_features(to_arrow(frame)).to_pandas()
    assert out["current_price"].tolist() == [10.0, 11.0, 12.0, 15.0]  # bad prices dropped
    assert out["volume_24h"].tolist() == [1.0, 6.0, 6.0, 6.0]  # both tied ticks in both windows
    # at t0 + 1h the last price at or before t0 is 10; at t0 + 2.5h the last one at or
    # before t0 + 1.5h is the later (in input order) of the two ticks at t0 + 1h
    np.testing.assert_allclose(out["price_change_1h"].iloc[1:], [10.0, 20.0, 25.0])
    assert out["price_change_1h"].isna().iloc[0]
    # no known volume in the window: unknown, not zero
    lone = frame.iloc[[0]].assign(volume=None, event_timestamp=t0 + timedelta(days=3))
    out = commodity_price_features(to_arrow(pd.concat([frame, lone]))).to_pandas()
    assert np.isnan(out["volume_24h"].iloc[-1])


def test_rejects_missing_columns() -> None:
    with pytest.raises(ValueError, match="missing column 'volume'"):
        commodity_price_features(
            pa.table({"commodity_code": ["a"], "event_timestamp": [datetime(2013, 1, 1)], "price": [1.0]})
        )


@pytest.fixture(scope="module")
def wti_2013() -> pa.Table:
    wti = load_committed_extracts(DATA_DIR)["wti_daily"]
    stamps = wti["event_timestamp"].to_pandas()
    keep = (stamps >= pd.Timestamp("2012-11-01", tz="UTC")) & (stamps < pd.Timestamp("2014-01-01", tz="UTC"))
    return wti.filter(pa.array(keep.to_numpy()))


def test_simulated_ticks_reproducible_and_anchored(wti_2013: pa.Table) -> None:
    start, end = datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 12, 31, 23, tzinfo=UTC)
    a = simulate_ticks(wti_2013, start, end, seed=42)
    assert a.equals(simulate_ticks(wti_2013, start, end, seed=42))
    assert not a.column("price").equals(simulate_ticks(wti_2013, start, end, seed=43).column("price"))
    ticks = a.to_pandas().set_index("event_timestamp")
    closes = wti_2013.to_pandas().set_index("event_timestamp")["price"]
    closes = closes[(closes.index >= start) & (closes.index <= end)]
    anchored = ticks.loc[closes.index]
    assert (anchored["price"].to_numpy() == closes.to_numpy()).all()  # exactly the real closes
    assert not anchored["simulated"].any()
    assert ticks.drop(closes.index)["simulated"].all()
    assert ticks.index.is_monotonic_increasing and (ticks["price"] > 0).all()
    assert 20 * len(closes) < len(ticks) < 26 * len(closes)  # hourly, markets shut at weekends
    assert (ticks.index.day_of_week != 5).all()
    # a sub-range is the same slice of a longer run: draws do not depend on start/end
    march = simulate_ticks(wti_2013, datetime(2013, 3, 1, tzinfo=UTC), datetime(2013, 3, 31, tzinfo=UTC), seed=42)
    sub = a.to_pandas()
    sub = sub[(sub.event_timestamp >= "2013-03-01") & (sub.event_timestamp <= "2013-03-31")]
    np.testing.assert_array_equal(march.column("price").to_numpy(), sub["price"].to_numpy())


def test_features_on_simulated_ticks_agree_with_real_closes(wti_2013: pa.Table) -> None:
    """At each real-close tick the session RSI equals TA-Lib's RSI of the real daily closes."""
    start, end = datetime(2012, 11, 1, tzinfo=UTC), datetime(2013, 12, 31, 23, tzinfo=UTC)
    sim = simulate_ticks(wti_2013, start, end, seed=5)
    out = commodity_price_features(sim, session_close=CLOSE_TIME_UTC).to_pandas().set_index("event_timestamp")
    closes = wti_2013.to_pandas().set_index("event_timestamp")["price"]
    expected = pd.Series(talib.RSI(closes.to_numpy(), timeperiod=14), index=closes.index)
    np.testing.assert_allclose(out.loc[closes.index, "rsi_14d"], expected, rtol=1e-9, equal_nan=True)
    assert out["volume_24h"].notna().all() and out["price_change_1h"].notna().mean() > 0.95


def test_runs_on_a_caller_connection_without_leaving_views(ticks: pd.DataFrame, features: pd.DataFrame) -> None:
    import duckdb

    con = duckdb.connect()
    out = commodity_price_features(to_arrow(ticks), con).to_pandas()
    pd.testing.assert_frame_equal(out, features)
    assert con.sql("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall() == [(0,)]
