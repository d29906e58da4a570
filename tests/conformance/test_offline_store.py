"""Offline store conformance: materialization reads, bad input, and the store behind a FeatureStore.

``pull_latest(view, start, end)`` is what materialization reads: per entity, the newest row with
``start <= event_ts <= end`` (both bounds inclusive, base.py), the highest created timestamp
among equal event times (a null created loses). Bad input is a typed Ladle error raised before
anything runs, through the protocol and through the SDK, and leaves the data as it was.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest

from ladle import FeatureStore
from ladle.errors import EntityKeyError, FeatureNotFoundError, RequestError
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP

from .offline_backends import OfflineBuilder, OfflineSetup
from .offline_support import (
    Guarded,
    at,
    commodity,
    entity_rows,
    feature_rows,
    make_view,
    pit,
    pulled,
    retrieve,
    select,
    window_rows,
)


def latest(setup: OfflineSetup, start: datetime, end: datetime, batch_rows: int = 100_000) -> list[dict[str, Any]]:
    view = make_view(setup.sources["prices"], "prices")
    return pulled(setup.store.pull_latest(view, start, end, batch_rows), ["code"])


def summary(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["code"], r["price"], r[EVENT_TIMESTAMP], r[CREATED_TIMESTAMP]) for r in rows]


# -- pull_latest / pull_all -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pull_latest_window_and_tie_break(offline: OfflineBuilder, seed: int) -> None:
    setup = offline({"prices": window_rows(seed)})
    rows = latest(setup, at(10), at(30))
    # A: the row exactly at the end wins, the one a microsecond later is outside; B: the row a
    # microsecond before the start is outside, and at 15 created 14 beats a null created time;
    # C: only a row exactly at the start; D and E have rows only outside the window.
    assert summary(rows) == [
        ("A", 5.0, at(30), at(30)),
        ("B", 9.0, at(15), at(14)),
        ("C", 10.0, at(10), at(10)),
    ]
    assert list(rows[0]) == ["code", "price", EVENT_TIMESTAMP, CREATED_TIMESTAMP]
    # An earlier end: at 20, created 25 beats created 20.
    assert summary(latest(setup, at(10), at(25)))[0] == ("A", 4.0, at(20), at(25))


def test_pull_latest_window_in_any_time_zone(offline: OfflineBuilder) -> None:
    setup = offline({"prices": window_rows()})
    expected = summary(latest(setup, at(10), at(30)))
    assert len(expected) == 3
    new_york, kolkata = ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")
    for start, end in [
        (at(10).replace(tzinfo=None), at(30).replace(tzinfo=None)),  # naive: UTC
        (at(10).astimezone(new_york), at(30).astimezone(new_york)),
        (at(10).astimezone(kolkata), at(30).astimezone(new_york)),
    ]:
        assert summary(latest(setup, start, end)) == expected, (start, end)


def test_pull_latest_batches_and_empty_windows(offline: OfflineBuilder) -> None:
    codes = [f"K{i:02d}" for i in range(25)]
    setup = offline(
        {
            "prices": feature_rows(
                {"code": codes * 2},
                [1] * 25 + [2] * 25,
                {"price": [float(i) for i in range(25)] + [100.0 + i for i in range(25)]},
                created=[1] * 50,
            )
        }
    )
    view = make_view(setup.sources["prices"], "prices")
    batches = list(setup.store.pull_latest(view, at(0), at(5), batch_rows=7))
    assert all(b.num_rows <= 7 for b in batches)
    rows = pulled(batches, ["code"])
    assert [(r["code"], r["price"]) for r in rows] == [(c, 100.0 + i) for i, c in enumerate(codes)]
    assert pulled(setup.store.pull_latest(view, at(3), at(9)), ["code"]) == []
    assert pulled(setup.store.pull_latest(view, at(-9), at(1) - timedelta(microseconds=1)), ["code"]) == []


def test_pull_latest_without_a_created_column(offline: OfflineBuilder) -> None:
    setup = offline({"prices": feature_rows({"code": ["A", "A", "B"]}, [0, 5, 5], {"price": [1.0, 2.0, 3.0]})})
    got = summary(latest(setup, at(0), at(5)))
    assert got == [("A", 2.0, at(5), None), ("B", 3.0, at(5), None)]


def test_pull_all_window_is_inclusive(offline: OfflineBuilder) -> None:
    setup = offline({"prices": window_rows(1)})
    view = make_view(setup.sources["prices"], "prices")
    rows = pulled(setup.store.pull_all(view, at(10), at(30)), ["code"])
    expected = sorted(
        [("A", 2.0), ("A", 3.0), ("A", 4.0), ("A", 5.0), ("B", 8.0), ("B", 9.0), ("C", 10.0)],
    )
    assert sorted((r["code"], r["price"]) for r in rows) == expected


# -- bad input ----------------------------------------------------------------------------------------


def test_missing_join_key_column(guarded: Guarded) -> None:
    setup, view = guarded.setup, guarded.view
    entity = entity_rows({"ticker": ["A"]}, [20])
    with pytest.raises(EntityKeyError, match="code"):
        pit(setup.store, entity, [select(view)])
    with pytest.raises(EntityKeyError, match="code"):
        retrieve(setup, [view], entity, ["prices:price"])
    guarded.unchanged()


def test_missing_timestamp_column(guarded: Guarded) -> None:
    setup, view = guarded.setup, guarded.view
    entity = pa.table({"code": ["A"], "label": [1]})
    with pytest.raises(RequestError, match="event_timestamp"):
        pit(setup.store, entity, [select(view)])
    with pytest.raises(RequestError, match="timestamp"):
        retrieve(setup, [view], entity, ["prices:price"])
    guarded.unchanged()


@pytest.mark.parametrize("column", [pa.array([1_710_050_400_000_000]), pa.array([1.5]), pa.array([True])], ids=str)
def test_timestamp_column_of_the_wrong_type(guarded: Guarded, column: pa.Array) -> None:
    setup, view = guarded.setup, guarded.view
    entity = pa.table({"code": ["A"], "event_timestamp": column})
    with pytest.raises(RequestError, match="event_timestamp"):
        pit(setup.store, entity, [select(view)])
    with pytest.raises(RequestError, match="event_timestamp"):
        retrieve(setup, [view], entity, ["prices:price"])
    guarded.unchanged()


def test_join_key_of_the_wrong_type(guarded: Guarded) -> None:
    setup, view = guarded.setup, guarded.view
    with pytest.raises(EntityKeyError, match="code"):
        retrieve(setup, [view], entity_rows({"code": [1]}, [20]), ["prices:price"])
    guarded.unchanged()


def test_unknown_feature(guarded: Guarded) -> None:
    setup, view = guarded.setup, guarded.view
    with pytest.raises(FeatureNotFoundError, match="volume"):
        retrieve(setup, [view], entity_rows({"code": ["A"]}, [20]), ["prices:volume"])
    guarded.unchanged()


def test_unknown_feature_in_a_selection_is_a_typed_error(guarded: Guarded) -> None:
    setup, view = guarded.setup, guarded.view
    with pytest.raises(FeatureNotFoundError, match="volume"):
        pit(setup.store, entity_rows({"code": ["A"]}, [20]), [select(view, "volume")])
    guarded.unchanged()


# -- behind a FeatureStore ------------------------------------------------------------------------------


def test_feature_store_on_the_backend(offline: OfflineBuilder) -> None:
    setup = offline({"prices": window_rows(2)})
    view = make_view(setup.sources["prices"], "prices")
    store = FeatureStore(config=setup.config)
    try:
        store.apply([commodity, setup.sources["prices"], view])
        frame = pd.DataFrame(
            {
                "code": ["B", "A", "A", "Z"],
                "event_timestamp": pd.DatetimeIndex([at(16), at(25), at(-1), at(16)]).tz_convert("America/New_York"),
            }
        )
        out = store.get_historical_features(entity_df=frame, features=["prices:price"]).to_arrow()
        assert out.column("price").to_pylist() == [9.0, 4.0, None, None]
        store.materialize(at(10), at(30))
        online = store.get_online_features(features=["prices:price"], entity_rows=[{"code": c} for c in "ABCDE"])
        assert online.to_dict()["price"] == [5.0, 9.0, 10.0, None, None]
    finally:
        store.close()


def test_feature_store_timestamps_are_utc_instants(offline: OfflineBuilder) -> None:
    setup = offline({"prices": window_rows()})
    view = make_view(setup.sources["prices"], "prices")
    store = FeatureStore(config=setup.config)
    try:
        store.apply([commodity, setup.sources["prices"], view])
        out = store.get_historical_features(entity_df=entity_rows({"code": ["A"]}, [15]), features=["prices:price"])
        stamp = out.to_arrow().column("event_timestamp").to_pylist()[0]
        assert stamp == at(15) and stamp.utcoffset() == timedelta(0)
    finally:
        store.close()
