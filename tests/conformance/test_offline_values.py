"""Offline store conformance, what comes back: feature types and nulls, compound keys, names.

A null feature value in the winning row is that row's value (the join never falls back to an
older row); features come back with the view's dtypes whatever narrower type the source stores.
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

from ladle import Array, Bool, Float32, Float64, Int32, Int64, String
from ladle.errors import FeatureNameCollisionError, RequestError
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP

from .offline_backends import OfflineBuilder, SourceTable
from .offline_support import (
    TS,
    at,
    commodity,
    entity_rows,
    feature_rows,
    make_view,
    market,
    pit,
    pulled,
    retrieve,
    select,
    stamps,
)

TYPED_FEATURES = [
    ("n", Int64),
    ("small", Int32),
    ("x", Float64),
    ("f", Float32),
    ("s", String),
    ("b", Bool),
    ("tags", Array(String)),
    ("xs", Array(Float64)),
]


def typed_rows() -> SourceTable:
    """A: a full row at 0 and a row of nulls at 10; B: one row at 5. Integers and floats stored narrower."""
    table = pa.table(
        {
            "code": ["A", "A", "B"],
            "event_ts": stamps([0, 10, 5]),
            "n": pa.array([1, None, 3], pa.int32()),
            "small": pa.array([7, None, -7], pa.int16()),
            "x": pa.array([1.5, None, -2.5], pa.float32()),
            "f": pa.array([0.25, None, 0.5], pa.float32()),
            "s": ["one", None, ""],
            "b": [True, None, False],
            "tags": [["a", "b"], None, []],
            "xs": [[1.0, None], None, [2.0]],
        }
    )
    return SourceTable(table, "event_ts")


def test_feature_values_and_types_in_a_join(offline: OfflineBuilder) -> None:
    setup = offline({"typed": typed_rows()})
    view = make_view(setup.sources["typed"], "typed", features=TYPED_FEATURES)
    out = pit(setup.store, entity_rows({"code": ["A", "A", "B"]}, [5, 10, 5]), [select(view)])
    for name, dtype in TYPED_FEATURES:
        assert out.schema.field(name).type == dtype.arrow, name
    assert out.slice(0, 1).select([n for n, _ in TYPED_FEATURES]).to_pylist() == [
        {"n": 1, "small": 7, "x": 1.5, "f": 0.25, "s": "one", "b": True, "tags": ["a", "b"], "xs": [1.0, None]}
    ]
    # The newest row's nulls are its values: no fallback to the row at 0.
    assert set(out.slice(1, 1).select([n for n, _ in TYPED_FEATURES]).to_pylist()[0].values()) == {None}
    assert out.slice(2, 1).select(["n", "s", "b", "tags"]).to_pylist() == [{"n": 3, "s": "", "b": False, "tags": []}]


def test_feature_values_and_types_in_pull_latest(offline: OfflineBuilder) -> None:
    setup = offline({"typed": typed_rows()})
    view = make_view(setup.sources["typed"], "typed", features=TYPED_FEATURES)
    batches = list(setup.store.pull_latest(view, at(0), at(10)))
    assert batches and all(b.schema.field(n).type == d.arrow for b in batches for n, d in TYPED_FEATURES)
    assert all(b.schema.field(EVENT_TIMESTAMP).type == TS for b in batches)
    rows = pulled(batches, ["code"])
    assert [r["code"] for r in rows] == ["A", "B"]
    assert {k: v for k, v in rows[0].items() if k not in ("code", EVENT_TIMESTAMP, CREATED_TIMESTAMP)} == dict.fromkeys(
        (n for n, _ in TYPED_FEATURES), None
    )
    assert rows[1]["xs"] == [2.0] and rows[1][EVENT_TIMESTAMP] == at(5)


def test_compound_keys_in_pull_latest(offline: OfflineBuilder) -> None:
    setup = offline(
        {
            "quotes": feature_rows(
                {"code": ["A", "A", "A", "B", "B"], "market_id": [1, 1, 2, 1, 1]},
                [0, 5, 3, 4, 4],
                {"bid": [1.0, 2.0, 3.0, 4.0, 5.0]},
                created=[0, 5, 3, 6, 5],
            )
        }
    )
    view = make_view(setup.sources["quotes"], "quotes", entities=[commodity, market], features=["bid"])
    rows = pulled(setup.store.pull_latest(view, at(0), at(10)), ["code", "market_id"])
    assert [(r["code"], r["market_id"], r["bid"]) for r in rows] == [("A", 1, 2.0), ("A", 2, 3.0), ("B", 1, 4.0)]


def test_any_timestamp_column_name_and_integer_key_width(offline: OfflineBuilder) -> None:
    setup = offline({"rates": feature_rows({"market_id": [1, 2]}, [0, 0], {"rate": [0.5, 0.75]})})
    view = make_view(setup.sources["rates"], "rates", entities=[market], features=["rate"], ttl=timedelta(hours=1))
    entity = pa.table({"market_id": pa.array([2, 1, 3], pa.int32()), "asof": stamps([1, 60, 1])})
    out = pit(setup.store, entity, [select(view)], timestamp_column="asof")
    assert out.column_names == ["market_id", "asof", "rate"]
    assert out.column("rate").to_pylist() == [0.75, 0.5, None]
    assert out.column("market_id").to_pylist() == [2, 1, 3]


def test_colliding_output_names_through_the_sdk(offline: OfflineBuilder) -> None:
    setup = offline({"a": feature_rows({"code": ["A"]}, [0], {"price": [1.0]})})
    one, two = (make_view(setup.sources["a"], name) for name in ("one", "two"))
    entity = entity_rows({"code": ["A"]}, [1])
    with pytest.raises(FeatureNameCollisionError):
        retrieve(setup, [one, two], entity, ["one:price", "two:price"])
    out = retrieve(setup, [one, two], entity, ["one:price", "two:price"], full_feature_names=True)
    assert out.column_names == ["code", "event_timestamp", "one__price", "two__price"]
    assert out.column("two__price").to_pylist() == [1.0]


def test_colliding_output_names_in_selections_are_a_typed_error(offline: OfflineBuilder) -> None:
    setup = offline({"a": feature_rows({"code": ["A"]}, [0], {"price": [1.0]})})
    one, two = (make_view(setup.sources["a"], name) for name in ("one", "two"))
    with pytest.raises(FeatureNameCollisionError, match="price"):
        pit(setup.store, entity_rows({"code": ["A"]}, [1]), [select(one), select(two)])


@pytest.mark.parametrize(
    "entity",
    [
        pa.table({"code": pa.array([], pa.string()), "event_timestamp": pa.array([], TS)}),
        pa.table({"code": ["A", "A"], "event_timestamp": pa.array([at(1), None], TS)}),
    ],
    ids=["empty", "null timestamp"],
)
def test_empty_frames_and_null_timestamps(offline: OfflineBuilder, entity: pa.Table) -> None:
    setup = offline({"a": feature_rows({"code": ["A"]}, [0], {"price": [1.0]})})
    view = make_view(setup.sources["a"], "a")
    with pytest.raises(RequestError):
        pit(setup.store, entity, [select(view)])
    with pytest.raises(RequestError):
        retrieve(setup, [view], entity, ["a:price"])
