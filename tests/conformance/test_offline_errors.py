"""Offline store conformance, more bad input (test_offline_store.py has the first cases).

Each is a typed Ladle error with the offending name in its message, through the protocol and,
where the SDK lets the input through, through the SDK; the store's rows and files are unchanged
afterwards (``Guarded``). Stores are called directly here, so each store checks its own input:
the SDK's checks do not protect callers of the protocol.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

from ladle.errors import DataSourceError, EntityKeyError, RequestError

from .offline_backends import OfflineBuilder, absent_source
from .offline_support import (
    FAR_FUTURE,
    FAR_PAST,
    TS,
    Guarded,
    at,
    entity_rows,
    feature_rows,
    make_view,
    market,
    pit,
    retrieve,
    select,
    stamps,
)


@pytest.mark.parametrize(
    "column",
    [
        pa.array(["2024-03-10T06:20:00Z"]),
        pa.array([dt.time(6, 20)], pa.time64("us")),
        pa.array([dt.timedelta(minutes=20)], pa.duration("s")),
        pa.array([Decimal("1710051600")], pa.decimal128(12, 0)),
    ],
    ids=["string", "time", "duration", "decimal"],
)
def test_timestamp_column_of_a_non_time_type(guarded: Guarded, column: pa.Array) -> None:
    # The protocol takes timestamp (or date) columns only; parsing ISO strings is the SDK's job.
    entity = pa.table({"code": ["A"], "event_timestamp": column})
    with pytest.raises(RequestError, match="event_timestamp"):
        pit(guarded.setup.store, entity, [select(guarded.view)])
    guarded.unchanged()


def test_timestamps_that_do_not_parse_through_the_sdk(guarded: Guarded) -> None:
    frame = pd.DataFrame({"code": ["A", "A"], "event_timestamp": ["2024-03-10T06:20:00Z", "yesterday"]})
    with pytest.raises(RequestError, match="event_timestamp"):
        retrieve(guarded.setup, [guarded.view], frame, ["prices:price"])
    guarded.unchanged()


@pytest.mark.parametrize("stamps_", [[None, 20, 20], [20, 20, None], [None, None, None]], ids=["first", "last", "all"])
def test_null_timestamps_anywhere(guarded: Guarded, stamps_: list[float | None]) -> None:
    entity = pa.table({"code": ["A", "B", "C"], "event_timestamp": stamps(stamps_)})
    with pytest.raises(RequestError, match="event_timestamp"):
        pit(guarded.setup.store, entity, [select(guarded.view)])
    with pytest.raises(RequestError, match="event_timestamp"):
        retrieve(guarded.setup, [guarded.view], entity, ["prices:price"])
    guarded.unchanged()


DUPLICATE_VALUES = {"code": "A", "event_timestamp": at(20), "label": 1}


@pytest.mark.parametrize(
    "names",
    [
        ["code", "code", "event_timestamp"],
        ["code", "event_timestamp", "event_timestamp"],
        ["code", "event_timestamp", "label", "label"],
    ],
    ids=["key", "timestamp", "extra"],
)
def test_duplicate_column_names(guarded: Guarded, names: list[str]) -> None:
    entity = pa.Table.from_arrays(
        [pa.array([DUPLICATE_VALUES[n]], TS if n == "event_timestamp" else None) for n in names], names=names
    )
    with pytest.raises(RequestError, match="duplicate"):
        pit(guarded.setup.store, entity, [select(guarded.view)])
    frame = pd.DataFrame([[DUPLICATE_VALUES[n] for n in names]], columns=names)
    with pytest.raises(RequestError, match="duplicate"):
        retrieve(guarded.setup, [guarded.view], frame, ["prices:price"])
    guarded.unchanged()


@pytest.mark.parametrize(
    ("key", "column"),
    [
        ("code", pa.array([1])),  # a string key given as integers
        ("code", pa.array([b"A"])),
        ("code", pa.array([1.0])),
        ("market_id", pa.array(["1"])),  # an integer key given as strings
        ("market_id", pa.array([1.0])),  # floats, as pandas makes of integers with a NaN
        ("market_id", pa.array([True])),
    ],
    ids=["code-int", "code-bytes", "code-float", "market-string", "market-float", "market-bool"],
)
def test_join_key_of_the_wrong_type_through_the_protocol(offline: OfflineBuilder, key: str, column: pa.Array) -> None:
    setup = offline(
        {
            "prices": feature_rows({"code": ["A", "1"]}, [0, 0], {"price": [1.0, 2.0]}),
            "rates": feature_rows({"market_id": [1, 2]}, [0, 0], {"rate": [0.5, 0.75]}),
        }
    )
    views = {
        "code": make_view(setup.sources["prices"], "prices"),
        "market_id": make_view(setup.sources["rates"], "rates", entities=[market], features=["rate"]),
    }
    guarded = Guarded.of(setup, views[key])
    entity = pa.table({key: column, "event_timestamp": stamps([5])})
    with pytest.raises(EntityKeyError, match=key):
        pit(setup.store, entity, [select(views[key])])
    with pytest.raises(EntityKeyError, match=key):
        retrieve(setup, [views[key]], entity, [f"{views[key].name}:{views[key].feature_names[0]}"])
    guarded.unchanged()


@pytest.mark.parametrize("name", ["__ladle_row", "__ladle_t", "__ladle_anything"])
def test_reserved_column_prefix(guarded: Guarded, name: str) -> None:
    entity = entity_rows({"code": ["A"]}, [20]).append_column(name, pa.array([7]))
    with pytest.raises(RequestError, match=name):
        pit(guarded.setup.store, entity, [select(guarded.view)])
    with pytest.raises(RequestError, match=name):
        retrieve(guarded.setup, [guarded.view], entity, ["prices:price"])
    guarded.unchanged()


def test_a_view_whose_source_is_missing(guarded: Guarded) -> None:
    setup, good = guarded.setup, guarded.view
    missing = make_view(absent_source(setup.sources["prices"]), "ghost")
    entity = entity_rows({"code": ["A"]}, [20])
    for selections in ([select(missing)], [select(good), select(missing)]):
        with pytest.raises(DataSourceError):
            pit(setup.store, entity, selections, full_feature_names=True)
    with pytest.raises(DataSourceError):
        retrieve(setup, [good, missing], entity, ["prices:price", "ghost:price"], full_feature_names=True)
    with pytest.raises(DataSourceError):
        list(setup.store.pull_latest(missing, FAR_PAST, FAR_FUTURE))
    with pytest.raises(DataSourceError):
        list(setup.store.pull_all(missing, FAR_PAST, FAR_FUTURE))
    guarded.unchanged()


def test_nothing_to_select_or_to_batch(guarded: Guarded) -> None:
    with pytest.raises(RequestError):
        pit(guarded.setup.store, entity_rows({"code": ["A"]}, [20]), [])
    with pytest.raises(RequestError, match="batch_rows"):
        list(guarded.setup.store.pull_latest(guarded.view, FAR_PAST, FAR_FUTURE, batch_rows=0))
    guarded.unchanged()
