"""docs/features.md says which real dates the shipped repo holds; these tests keep it true.

The table "Real data in the offline store" is parsed and each series' first and last real event
time is checked against the raw data (release times recomputed here from the reference periods)
and against what the repo's ingestions actually produce. Nothing shifts data any more.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ladle.ingest import IngestWindow
from ladle.ingest.collect import collect_ingestions

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "features.md").read_text()
ALL = IngestWindow(datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
# The modelled publication lags, as docs/features.md's lag table states them.
LAGS = {
    "real_gdp": timedelta(days=30, hours=13, minutes=30),
    "cpi": timedelta(days=15, hours=13, minutes=30),
    "unemployment_rate": timedelta(days=7, hours=13, minutes=30),
    "interest_rate": timedelta(days=1, hours=21, minutes=15),
    "industrial_production": timedelta(days=16, hours=14, minutes=15),
}


def documented_dates() -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    section = DOC.split("### Real data in the offline store", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", cells[2]):
            name = cells[0].strip("`").removeprefix("weather `").strip("`")
            rows[name] = (pd.Timestamp(cells[2], tz="UTC"), pd.Timestamp(cells[3], tz="UTC"))
    return rows


@pytest.fixture(scope="module")
def ingested() -> dict[str, pd.DataFrame]:
    return {job.feature_view: job.compute(ALL).to_pandas() for job in collect_ingestions(ROOT / "feature_repo")}


@pytest.fixture(scope="module")
def raw_macro() -> pd.DataFrame:
    from ladle.datasets import MissingDataPackageError, load_committed_extracts, load_us_macro

    try:
        return load_us_macro(include_industrial_production=True).to_pandas()
    except MissingDataPackageError:
        return load_committed_extracts(ROOT / "data")["us_macro"].to_pandas()


def test_the_table_names_every_series_of_the_shipped_repo() -> None:
    assert set(documented_dates()) == {
        "WTI daily close",
        "real_gdp",
        "cpi",
        "interest_rate",
        "unemployment_rate",
        "industrial_production",
        "EWR",
        "JFK",
        "LGA",
    }


def test_wti_dates_match_the_raw_closes_and_the_ingested_rows(ingested: dict[str, pd.DataFrame]) -> None:
    first, last = documented_dates()["WTI daily close"]
    raw = pd.read_parquet(ROOT / "data" / "wti_daily.parquet")
    assert (raw["event_timestamp"].min(), raw["event_timestamp"].max()) == (first, last)
    assert first.date().isoformat() == "1986-01-02" and last.date().isoformat() == "2019-01-03"  # the FRED series
    rows = ingested["commodity_price_features"]
    assert (rows["event_timestamp"].min(), rows["event_timestamp"].max()) == (first, last)
    assert len(rows) == len(raw) and not rows["simulated"].any()
    # "price_change_1h and volume_24h are NULL" in the daily history; every other feature is filled
    assert rows["price_change_1h"].isna().all() and rows["volume_24h"].isna().all()
    assert rows["current_price"].tolist() == raw["price"].tolist()
    assert rows[["ma_7d", "ma_30d", "price_change_24h"]].iloc[1:].notna().all().all()


def test_macro_release_dates_match_the_raw_periods_and_the_ingested_rows(
    raw_macro: pd.DataFrame, ingested: dict[str, pd.DataFrame]
) -> None:
    stamps = set(ingested["economic_features"]["event_timestamp"])
    for series, (first, last) in documented_dates().items():
        if series not in LAGS:
            continue
        periods = raw_macro.loc[raw_macro["series"] == series].dropna(subset=["value"])
        if periods.empty:
            assert series == "industrial_production"  # only with the data extra
            continue
        months = 1 if periods["frequency"].iloc[0] == "M" else 3

        def released(period: object, months: int = months, series: str = series) -> pd.Timestamp:
            return pd.Timestamp(period, tz="UTC") + pd.DateOffset(months=months) + LAGS[series]

        assert released(periods["reference_period"].min()) == first, series
        assert released(periods["reference_period"].max()) == last, series
        assert {first, last} <= stamps, series


def test_weather_dates_match_the_raw_observations_and_the_ingested_rows(ingested: dict[str, pd.DataFrame]) -> None:
    raw = pd.read_parquet(ROOT / "data" / "nyc_weather_2013.parquet")
    rows = ingested["weather_features"]
    for station in ("EWR", "JFK", "LGA"):
        first, last = documented_dates()[station]
        for table in (raw, rows):
            times = table.loc[table["location_id"] == station, "event_timestamp"]
            assert (times.min(), times.max()) == (first, last), station


def test_the_three_2013_closes_quoted_in_the_docs_are_the_raw_ones() -> None:
    raw = pd.read_parquet(ROOT / "data" / "wti_daily.parquet").set_index("event_timestamp")["price"]
    pattern = r"the Friday closes\s+2013-05-31 \(([\d.]+)\), 2013-08-30 \(([\d.]+)\) and 2013-11-29 \(([\d.]+)\)"
    quoted = re.search(pattern, DOC)
    assert quoted is not None
    for day, value in zip(("2013-05-31", "2013-08-30", "2013-11-29"), quoted.groups(), strict=True):
        asked = pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)  # the following Saturday/Sunday
        assert raw[raw.index <= asked].iloc[-1] == float(value), day


def test_no_shifting_code_is_left() -> None:
    with pytest.raises(ImportError):
        __import__("ladle.datasets.replay")
    for folder in ("src", "feature_repo", "docs", "scripts"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".md", ".sh"}:
                text = path.read_text()
                for word in ("original_event_timestamp", "replay_offset", "shift_times"):
                    assert word not in text, f"{path}: {word}"
