"""Economic features: rates recomputed with pandas, event time = modelled release time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ladle.datasets import load_committed_extracts
from ladle.transforms import economic_features

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def releases() -> pa.Table:
    return load_committed_extracts(DATA_DIR)["us_macro"]


@pytest.fixture(scope="module")
def features(releases: pa.Table) -> pd.DataFrame:
    return economic_features(releases).to_pandas()


@pytest.fixture(scope="module")
def quarterly(releases: pa.Table) -> pd.DataFrame:
    """The raw quarterly series side by side, indexed by quarter start."""
    raw = releases.to_pandas()
    return raw.pivot(index="reference_period", columns="series", values="value").sort_index()


def as_of(features: pd.DataFrame, when: pd.Timestamp) -> pd.Series:
    """The feature row a point-in-time join would pick at ``when``."""
    at = features["event_timestamp"].searchsorted(when, side="right") - 1
    assert at >= 0
    return features.iloc[at]


def release_time(quarter_start: date, days: int, hh: int, mm: int) -> pd.Timestamp:
    end = pd.Timestamp(quarter_start, tz="UTC") + pd.DateOffset(months=3)
    return end + pd.Timedelta(days=days, hours=hh, minutes=mm)


def test_schema(features: pd.DataFrame) -> None:
    assert list(features.columns) == [
        "country_code",
        "event_timestamp",
        "created",
        "gdp_growth",
        "inflation_rate",
        "interest_rate",
        "unemployment_rate",
        "industrial_production",
    ]
    assert (features["created"] == features["event_timestamp"]).all()
    assert features["event_timestamp"].is_monotonic_increasing
    assert features["industrial_production"].isna().all()  # not in the committed extract


def test_gdp_growth_is_annualised_qoq_at_release(features: pd.DataFrame, quarterly: pd.DataFrame) -> None:
    gdp = quarterly["real_gdp"]
    expected = ((gdp / gdp.shift(1)) ** 4 - 1) * 100
    checked = 0
    for quarter, value in expected.dropna().items():
        released = release_time(quarter, 30, 13, 30)  # BEA advance estimate, 08:30 ET
        row = as_of(features, released)
        assert row["event_timestamp"] == released
        np.testing.assert_allclose(row["gdp_growth"], value, rtol=1e-10, atol=1e-10)
        # one microsecond before, the figure is not public: the previous quarter's is served
        before = as_of(features, released - pd.Timedelta(microseconds=1))
        previous = expected.get(quarter - pd.DateOffset(months=3))
        if previous is not None and not np.isnan(previous):
            np.testing.assert_allclose(before["gdp_growth"], previous, rtol=1e-10, atol=1e-10)
        checked += 1
    assert checked == len(gdp) - 1


def check_released_on_time(features: pd.DataFrame, column: str, expected: pd.Series, lag: tuple[int, int, int]) -> None:
    """Each value is served from its release instant on, and not one microsecond earlier."""
    values = expected.dropna()
    for (quarter, value), previous in zip(values.items(), [np.nan, *values.iloc[:-1]], strict=True):
        released = release_time(quarter, *lag)
        np.testing.assert_allclose(as_of(features, released)[column], value, rtol=1e-10, atol=1e-10)
        if not np.isnan(previous) and not np.isclose(previous, value):
            before = as_of(features, released - pd.Timedelta(microseconds=1))[column]
            np.testing.assert_allclose(before, previous, rtol=1e-10, atol=1e-10)


def test_inflation_yoy_and_passthrough_rates(features: pd.DataFrame, quarterly: pd.DataFrame) -> None:
    cpi = quarterly["cpi"]
    check_released_on_time(features, "inflation_rate", cpi.pct_change(4, fill_method=None) * 100, (15, 13, 30))
    check_released_on_time(features, "interest_rate", quarterly["interest_rate"], (1, 21, 15))
    check_released_on_time(features, "unemployment_rate", quarterly["unemployment_rate"], (7, 13, 30))


def test_published_value_unseen_before_release(features: pd.DataFrame, quarterly: pd.DataFrame) -> None:
    """2008Q4 GDP (-6.x % annualised) must not be visible in January 2009."""
    gdp = quarterly["real_gdp"]
    q4 = ((gdp.loc[date(2008, 10, 1)] / gdp.loc[date(2008, 7, 1)]) ** 4 - 1) * 100
    in_january = features[
        (features["event_timestamp"] >= pd.Timestamp("2009-01-01", tz="UTC"))
        & (features["event_timestamp"] < pd.Timestamp("2009-01-31", tz="UTC"))
    ]
    assert len(in_january) > 0
    assert not np.isclose(in_january["gdp_growth"], q4).any()
    assert np.isclose(as_of(features, pd.Timestamp("2009-01-31 13:30", tz="UTC"))["gdp_growth"], q4)


def test_no_look_ahead_when_future_releases_change(releases: pa.Table, features: pd.DataFrame) -> None:
    raw = releases.to_pandas()
    cut = pd.Timestamp("1990-04-01", tz="UTC")  # first release of a 1990 figure is after this
    future = pd.to_datetime(raw["reference_period"]).dt.tz_localize("UTC") >= pd.Timestamp("1990-01-01", tz="UTC")
    raw.loc[future, "value"] *= 1.5
    changed = economic_features(pa.Table.from_pandas(raw, preserve_index=False)).to_pandas()
    mask = changed["event_timestamp"] <= cut
    pd.testing.assert_frame_equal(
        changed[mask].reset_index(drop=True),
        features[features["event_timestamp"] <= cut].reset_index(drop=True),
    )


def monthly_ip(months: int = 30) -> pd.DataFrame:
    periods = [date(2000 + k // 12, k % 12 + 1, 1) for k in range(months)]
    values = 100 + np.arange(months) ** 1.5  # growth rates differ month to month
    return pd.DataFrame(
        {
            "country_code": "DE",
            "series": "industrial_production",
            "frequency": "M",
            "reference_period": periods,
            "value": values,
        }
    )


def test_monthly_industrial_production_yoy() -> None:
    raw = monthly_ip()
    out = economic_features(pa.Table.from_pandas(raw, preserve_index=False)).to_pandas()
    expected = raw["value"].pct_change(12, fill_method=None) * 100
    assert len(out) == len(raw)
    np.testing.assert_allclose(out["industrial_production"].to_numpy()[12:], expected[12:], rtol=1e-10, atol=1e-10)
    assert out["industrial_production"].iloc[:12].isna().all()
    # G.17 lag: 16 days after the month ends, 14:15 UTC
    assert out["event_timestamp"].iloc[0] == pd.Timestamp("2000-02-17 14:15", tz="UTC")


def test_monthly_gdp_annualised_with_twelve_periods() -> None:
    raw = monthly_ip(3).assign(series="real_gdp", value=[100.0, 101.0, 101.5])
    out = economic_features(pa.Table.from_pandas(raw, preserve_index=False)).to_pandas()
    np.testing.assert_allclose(out["gdp_growth"].iloc[1:], [(1.01**12 - 1) * 100, ((101.5 / 101) ** 12 - 1) * 100])


def test_simultaneous_releases_newest_period_wins() -> None:
    raw = monthly_ip(26)
    raw["release_timestamp"] = datetime(2005, 1, 1, tzinfo=UTC)  # a bulk publication
    out = economic_features(pa.Table.from_pandas(raw, preserve_index=False)).to_pandas()
    assert len(out) == 1
    np.testing.assert_allclose(out["industrial_production"], raw["value"].iloc[-1] / raw["value"].iloc[-13] * 100 - 100)


def test_explicit_release_timestamp_and_custom_lags() -> None:
    raw = monthly_ip(14)
    raw["release_timestamp"] = [datetime(2010, 1, 1, tzinfo=UTC) + timedelta(days=k) for k in range(14)]
    out = economic_features(pa.Table.from_pandas(raw, preserve_index=False)).to_pandas()
    assert out["event_timestamp"].iloc[-1] == pd.Timestamp("2010-01-14", tz="UTC")
    custom = economic_features(
        pa.Table.from_pandas(monthly_ip(2), preserve_index=False), lags={"industrial_production": timedelta(0)}
    ).to_pandas()
    assert custom["event_timestamp"].iloc[0] == pd.Timestamp("2000-02-01", tz="UTC")


def test_unknown_series_rejected() -> None:
    raw = monthly_ip(2).assign(series="gdp")
    with pytest.raises(ValueError, match="unknown series"):
        economic_features(pa.Table.from_pandas(raw, preserve_index=False))
