"""``push`` and ``write_to_online_store``: input forms, timestamps, targets, validation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import FeatureStore, FieldStatus
from ladle.errors import FeatureViewNotFoundError, PushSourceNotFoundError, RequestError, SchemaMismatchError

from .online_repo import T0, build

EVENT = datetime(2024, 2, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    st = build(tmp_path)
    yield st
    st.close()


def online(store: FeatureStore, codes: list[str], view: str = "live_prices") -> dict[str, list[Any]]:
    resp = store.get_online_features([view], {"commodity_code": codes})
    out = resp.to_dict(include_event_timestamps=True)
    out["status"] = resp.statuses[1]
    return out


def offline_rows(store: FeatureStore) -> pd.DataFrame:
    files = sorted((store.repo_path / "data").glob("ticks*"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files]) if files else pd.DataFrame()


def test_push_dict_with_iso_strings(store: FeatureStore) -> None:
    n = store.push(
        "ticks_push",
        {
            "commodity_code": ["A", "B"],
            "price": [1.5, 2.5],
            "volume": [10, 20],
            "note": ["x", None],
            "event_timestamp": ["2024-02-01T09:30:00", "2024-02-01T10:30:00+01:00"],  # naive = UTC
        },
    )
    assert n == 2
    got = online(store, ["A", "B"])
    assert got["price"] == [1.5, 2.5]
    assert got["note"] == ["x", None]
    assert got["price__ts"] == [EVENT, EVENT]


@pytest.mark.parametrize(
    "stamp",
    [EVENT, EVENT.replace(tzinfo=None), EVENT.timestamp(), int(EVENT.timestamp()), "2024-02-01T09:30:00Z"],
    ids=["aware", "naive", "epoch-float", "epoch-int", "iso-z"],
)
def test_timestamp_forms(store: FeatureStore, stamp: Any) -> None:
    store.push(
        "ticks_push",
        {"commodity_code": ["A"], "price": [1.0], "volume": [1], "note": ["n"], "event_timestamp": [stamp]},
    )
    assert online(store, ["A"])["price__ts"] == [EVENT]


def test_push_dataframe_and_arrow(store: FeatureStore) -> None:
    frame = pd.DataFrame(
        {
            "commodity_code": ["A"],
            "price": [3.0],
            "volume": [3],
            "note": ["df"],
            "event_timestamp": [pd.Timestamp(EVENT)],
        }
    )
    store.push("ticks_push", frame)
    assert online(store, ["A"])["price"] == [3.0]
    table = pa.Table.from_pandas(frame.assign(price=[4.0], event_timestamp=[pd.Timestamp(EVENT + timedelta(1))]))
    store.push("ticks_push", table)
    assert online(store, ["A"])["price"] == [4.0]


def test_scalars_broadcast(store: FeatureStore) -> None:
    store.push(
        "ticks_push",
        {"commodity_code": ["A", "B"], "price": 7.0, "volume": 1, "note": "same", "event_timestamp": EVENT.isoformat()},
    )
    assert online(store, ["A", "B"])["price"] == [7.0, 7.0]


def test_older_push_does_not_replace_newer(store: FeatureStore) -> None:
    row = {"commodity_code": ["A"], "volume": [1], "note": ["n"]}
    store.push("ticks_push", {**row, "price": [2.0], "event_timestamp": [EVENT]})
    assert store.push("ticks_push", {**row, "price": [1.0], "event_timestamp": [EVENT - timedelta(hours=1)]}) == 0
    assert online(store, ["A"])["price"] == [2.0]


def test_int_column_for_float_feature_and_created_column(store: FeatureStore) -> None:
    store.push(
        "ticks_push",
        {
            "commodity_code": ["A"],
            "price": [5],
            "volume": [1],
            "note": ["n"],
            "event_timestamp": [EVENT],
            "created": [EVENT],
        },
    )
    assert online(store, ["A"])["price"] == [5.0]


def test_to_offline_appends_and_leaves_online_alone(store: FeatureStore) -> None:
    before = len(offline_rows(store))
    n = store.push(
        "ticks_push",
        {"commodity_code": ["Q"], "price": [9.0], "volume": [9], "note": ["off"], "event_timestamp": [EVENT]},
        to="offline",
    )
    assert n == 0
    assert online(store, ["Q"])["status"] == [FieldStatus.NOT_FOUND]
    rows = offline_rows(store)
    assert len(rows) == before + 1
    added = rows[rows["commodity_code"] == "Q"].iloc[0]
    assert added["price"] == 9.0
    assert added["event_timestamp"] == pd.Timestamp(EVENT)
    assert pd.notna(added["created"])  # the source has a created column: filled with the push time
    # and materialization now sees it
    store.materialize(EVENT - timedelta(hours=1), EVENT + timedelta(hours=1), ["live_prices"])
    assert online(store, ["Q"])["price"] == [9.0]


def test_to_online_and_offline(store: FeatureStore) -> None:
    before = len(offline_rows(store))
    row = {"commodity_code": ["R"], "price": [8.0], "volume": [8], "note": ["both"], "event_timestamp": [EVENT]}
    assert store.push("ticks_push", row, to="online_and_offline") == 1
    assert online(store, ["R"])["price"] == [8.0]
    assert len(offline_rows(store)) == before + 1


@pytest.mark.parametrize(
    "change",
    [
        {"price": None},  # a feature column is missing
        {"commodity_code": None},  # the join key is missing
        {"event_timestamp": None},  # the timestamp is missing
        {"price": ["not a number"]},
        {"volume": [1.5]},  # would truncate
        {"commodity_code": [12]},  # an int for a String key
        {"event_timestamp": ["yesterday-ish"]},
        {"event_timestamp": [None]},
        {"note": [b"bytes"]},
        {"volume": [2**70]},  # too large for Int64
        {"price": [1.0, 2.0]},  # lengths differ
    ],
)
def test_bad_rows_write_nothing(store: FeatureStore, change: dict[str, Any]) -> None:
    row: dict[str, Any] = {
        "commodity_code": ["A"],
        "price": [1.0],
        "volume": [1],
        "note": ["n"],
        "event_timestamp": [EVENT],
    }
    for key, value in change.items():
        if value is None:
            del row[key]
        else:
            row[key] = value
    before = len(offline_rows(store))
    with pytest.raises(SchemaMismatchError):
        store.push("ticks_push", row, to="online_and_offline")
    assert online(store, ["A"])["status"] == [FieldStatus.NOT_FOUND]
    assert len(offline_rows(store)) == before


def test_unknown_push_source_and_bad_mode(store: FeatureStore) -> None:
    row = {"commodity_code": ["A"], "price": [1.0], "volume": [1], "note": ["n"], "event_timestamp": [EVENT]}
    with pytest.raises(PushSourceNotFoundError):
        store.push("nope", row)
    with pytest.raises(PushSourceNotFoundError):
        store.push("ticks", row)  # a batch source is not a push source
    with pytest.raises(RequestError):
        store.push("ticks_push", row, to="everywhere")  # type: ignore[arg-type]


def test_write_to_online_store(store: FeatureStore) -> None:
    row = {"commodity_code": ["A"], "price": [6.0], "volume": [6], "note": ["w"], "event_timestamp": [T0]}
    assert store.write_to_online_store("prices", row) == 1
    resp = store.get_online_features(["prices:price"], {"commodity_code": ["A"]})
    assert resp.values[1] == [None]  # T0 is far older than the 1-day ttl ...
    assert resp.statuses[1] == [FieldStatus.OUTSIDE_MAX_AGE]  # ... but it is stored
    with pytest.raises(FeatureViewNotFoundError):
        store.write_to_online_store("nope", row)
    with pytest.raises(SchemaMismatchError):
        store.write_to_online_store("prices", {k: v for k, v in row.items() if k != "volume"})


def test_composite_key_view_write(store: FeatureStore) -> None:
    store.write_to_online_store(
        "quotes", {"venue_id": [5], "commodity_code": ["A"], "bid": [1.25], "ts": [datetime.now(UTC).isoformat()]}
    )
    resp = store.get_online_features(["quotes:bid"], {"venue_id": [5], "commodity_code": ["A"]})
    assert resp.values[2] == [1.25]
