"""Offline store conformance, awkward data: empty sources and windows, nulls, composite keys.

* An entity row without a matching source row is kept, with NULL features of the view's dtypes;
  a source without rows (or no row in the window asked for) is no error.
* Feast's row semantics: the winning row is chosen first (keys, time, ttl, created time), then its
  values are returned as they are. A NULL in the newest row is that row's value, never filled from
  an older row, and a row whose every feature is NULL is still a match. NULL comes back as NULL, not
  NaN, 0 or "", and 0, "" or False come back as themselves.
* Keys compare exactly: every part of a composite key, integers as integers, strings byte for byte
  (case, trailing spaces, quotes); a NULL key part matches nothing (not even a NULL), and
  ``pull_latest`` skips rows with one.

Expected values are written out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from ladle import Array, Bool, Bytes, Entity, Float32, Float64, Int32, Int64, String, UnixTimestamp, ValueType
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP, DType

from .offline_backends import OfflineBuilder, SourceTable
from .offline_support import (
    FAR_FUTURE,
    FAR_PAST,
    TS,
    at,
    commodity,
    entity_rows,
    feature_rows,
    make_view,
    market,
    pit,
    pulled,
    select,
    stamps,
)

venue = Entity(name="venue", join_keys=["venue"], value_type=ValueType.STRING)

#: Every primitive dtype and an array of each.
ALL_DTYPES: list[tuple[str, DType]] = [
    ("n64", Int64),
    ("n32", Int32),
    ("x64", Float64),
    ("x32", Float32),
    ("s", String),
    ("b", Bool),
    ("raw", Bytes),
    ("ts", UnixTimestamp),
    *((f"list_{name}", Array(dtype)) for name, dtype in [("n64", Int64), ("n32", Int32), ("x64", Float64)]),
    *((f"list_{name}", Array(dtype)) for name, dtype in [("x32", Float32), ("s", String), ("b", Bool)]),
    *((f"list_{name}", Array(dtype)) for name, dtype in [("raw", Bytes), ("ts", UnixTimestamp)]),
]
NAMES = [name for name, _ in ALL_DTYPES]


def typed_table(keys: dict[str, pa.Array], minutes: list[float], values: dict[str, list[Any]]) -> pa.Table:
    """Keys, ``event_ts`` and one column per entry of ALL_DTYPES (``values`` by name, else all NULL)."""
    columns: dict[str, pa.Array] = {**keys, "event_ts": stamps(minutes)}
    for name, dtype in ALL_DTYPES:
        columns[name] = pa.array(values.get(name, [None] * len(minutes)), dtype.arrow)
    return pa.table(columns)


def assert_typed(table: pa.Table, names: list[str], dtypes: list[DType]) -> None:
    for name, dtype in zip(names, dtypes, strict=True):
        assert table.schema.field(name).type == dtype.arrow, name


# -- empty sources, empty windows -------------------------------------------------------------------


@pytest.mark.parametrize(("created", "full_feature_names"), [(False, False), (True, True)])
def test_a_source_without_rows(offline: OfflineBuilder, created: bool, full_feature_names: bool) -> None:
    empty = typed_table({"code": pa.array([], pa.string())}, [], {})
    if created:
        empty = empty.append_column("created", pa.array([], TS))
    prices = feature_rows({"code": ["A", "B"]}, [0, 0], {"price": [1.0, 2.0]})
    setup = offline({"empty": SourceTable(empty, "event_ts", "created" if created else ""), "prices": prices})
    view = make_view(setup.sources["empty"], "empty", features=ALL_DTYPES, ttl=timedelta(hours=1))
    price_view = make_view(setup.sources["prices"], "prices")
    entity = entity_rows({"code": ["A", "Z", "B", "A"]}, [5, 5, -5, 5], label=[1, 2, 3, 4])
    out = pit(setup.store, entity, [select(view), select(price_view)], full_feature_names)
    names = [f"empty__{n}" if full_feature_names else n for n in NAMES]
    price = "prices__price" if full_feature_names else "price"
    assert out.column_names == ["code", "event_timestamp", "label", *names, price]
    assert out.select(["code", "label"]).to_pylist() == entity.select(["code", "label"]).to_pylist()
    assert_typed(out, names, [d for _, d in ALL_DTYPES])
    assert all(out.column(n).null_count == 4 for n in names)
    assert out.column(price).to_pylist() == [1.0, None, None, 1.0]  # the other view still joins
    assert pulled(setup.store.pull_latest(view, FAR_PAST, FAR_FUTURE), ["code"]) == []
    assert pulled(setup.store.pull_all(view, FAR_PAST, FAR_FUTURE), ["code"]) == []


def test_no_row_in_the_window_asked_for(offline: OfflineBuilder) -> None:
    setup = offline({"typed": SourceTable(typed_table({"code": pa.array(["A", "A"])}, [0, 20], {}), "event_ts")})
    view = make_view(setup.sources["typed"], "typed", features=ALL_DTYPES, ttl=timedelta(minutes=5))
    # Every row: before the first source row, later than the last one by more than the ttl, between
    # two rows but too old, or an entity without rows.
    entity = entity_rows({"code": ["A", "A", "A", "Z"]}, [-1, 26, 10, 20])
    out = pit(setup.store, entity, [select(view)])
    assert out.num_rows == 4 and out.column("code").to_pylist() == ["A", "A", "A", "Z"]
    assert_typed(out, NAMES, [d for _, d in ALL_DTYPES])
    assert all(out.column(n).null_count == 4 for n in NAMES)
    for start, end in [(at(1), at(19)), (at(-9), at(0) - timedelta(microseconds=1)), (at(21), at(99))]:
        assert pulled(setup.store.pull_all(view, start, end), ["code"]) == []
        assert pulled(setup.store.pull_latest(view, start, end), ["code"]) == []


# -- nulls ---------------------------------------------------------------------------------------------


def test_nulls_and_falsy_values_of_every_dtype(offline: OfflineBuilder) -> None:
    full = {
        "n64": [2**40, 0, None],
        "n32": [-7, 0, None],
        "x64": [1.5, 0.0, None],
        "x32": [0.25, 0.0, None],
        "s": ["one", "", None],
        "b": [True, False, None],
        "raw": [b"\x00\xff", b"", None],
        "ts": [at(-60), datetime(1970, 1, 1, tzinfo=UTC), None],
        "list_n64": [[1, None], [], None],
        "list_n32": [[2], [], None],
        "list_x64": [[0.5, None], [], None],
        "list_x32": [[1.25], [], None],
        "list_s": [["a", "", None], [], None],
        "list_b": [[False, True], [], None],
        "list_raw": [[b"z"], [], None],
        "list_ts": [[at(0)], [], None],
    }
    table = typed_table({"code": pa.array(["A", "B", "C"])}, [0, 0, 0], full)
    setup = offline({"typed": SourceTable(table, "event_ts")})
    view = make_view(setup.sources["typed"], "typed", features=ALL_DTYPES)
    out = pit(setup.store, entity_rows({"code": ["A", "B", "C", "D"]}, [1, 1, 1, 1]), [select(view)])
    assert_typed(out, NAMES, [d for _, d in ALL_DTYPES])
    expected = [{n: full[n][i] for n in NAMES} for i in range(3)] + [dict.fromkeys(NAMES)]
    assert out.select(NAMES).to_pylist() == expected
    assert [out.column(n).null_count for n in NAMES] == [2] * len(NAMES)  # C's NULLs are NULL, not NaN/0/""
    rows = pulled(setup.store.pull_latest(view, at(0), at(0)), ["code"])
    assert [{n: r[n] for n in NAMES} for r in rows] == expected[:3]


def null_rows() -> SourceTable:
    """A: values at 0, a row with NULLs at 10. B: at 5, three rows told apart by created time
    (the newest created is all NULL). C: only an all-NULL row. D: values at 0, all NULL at 8."""
    return feature_rows(
        {"code": ["A", "A", "B", "B", "B", "C", "D", "D"]},
        [0, 10, 5, 5, 5, 3, 0, 8],
        {
            "x": [1.0, None, 2.0, None, 9.0, None, 4.0, None],
            "s": ["a", "b", None, None, "z", None, "d", None],
            "n": [1, None, 2, None, 9, None, 4, None],
        },
        created=[0, 10, 6, 7, None, 3, 0, 8],
    )


def test_the_newest_row_wins_with_its_nulls(offline: OfflineBuilder) -> None:
    setup = offline({"nulls": null_rows()})
    view = make_view(setup.sources["nulls"], "nulls", features=["x", ("s", String), ("n", Int64)])
    cases = [
        ("A", 5, (1.0, "a", 1)),
        ("A", 10, (None, "b", None)),  # per row, not per column: x and n are not taken from the row at 0
        ("B", 5, (None, None, None)),  # created 7 (all NULL) beats created 6 and a NULL created time
        ("C", 3, (None, None, None)),
        ("D", 7, (4.0, "d", 4)),
        ("D", 9, (None, None, None)),  # the all-NULL row at 8 is a match: the row at 0 is not used
    ]
    out = pit(setup.store, entity_rows({"code": [c[0] for c in cases]}, [c[1] for c in cases]), [select(view)])
    assert list(zip(*(out.column(n).to_pylist() for n in ("x", "s", "n")), strict=True)) == [c[2] for c in cases]


def test_pull_latest_returns_all_null_rows(offline: OfflineBuilder) -> None:
    setup = offline({"nulls": null_rows()})
    view = make_view(setup.sources["nulls"], "nulls", features=["x", ("s", String), ("n", Int64)])
    rows = pulled(setup.store.pull_latest(view, at(0), at(10)), ["code"])
    got = [(r["code"], r["x"], r["s"], r["n"], r[EVENT_TIMESTAMP], r[CREATED_TIMESTAMP]) for r in rows]
    assert got == [
        ("A", None, "b", None, at(10), at(10)),
        ("B", None, None, None, at(5), at(7)),
        ("C", None, None, None, at(3), at(3)),
        ("D", None, None, None, at(8), at(8)),
    ]


# -- composite keys --------------------------------------------------------------------------------------


def quote_rows() -> SourceTable:
    return feature_rows(
        {"code": ["A", "A", "B", "A", None, "A", "B"], "market_id": [1, 2, 3, 1, 1, None, 1]},
        [0, 0, 0, 10, 0, 0, 20],
        {"bid": [1.0, 2.0, 3.0, 1.5, 8.0, 9.0, 4.0]},
    )


def test_composite_key_with_an_integer_part(offline: OfflineBuilder) -> None:
    setup = offline({"quotes": quote_rows()})
    view = make_view(setup.sources["quotes"], "quotes", entities=[commodity, market], features=["bid"])
    cases: list[tuple[Any, Any, float, float | None]] = [
        ("A", 1, 5, 1.0),
        ("A", 1, 10, 1.5),
        ("A", 2, 30, 2.0),
        ("B", 3, 1, 3.0),
        ("B", 1, 19, None),  # B and 1 both exist, but (B, 1) only from minute 20
        ("A", 3, 5, None),  # market 3 exists for B only
        ("C", 1, 5, None),  # no commodity C
        (None, 1, 5, None),  # a NULL key part matches nothing, not the (NULL, 1) row
        ("A", None, 5, None),
    ]
    # The entity frame names the keys in another order than the view, with a narrower integer type.
    entity = pa.table(
        {
            "market_id": pa.array([c[1] for c in cases], pa.int32()),
            "event_timestamp": stamps([c[2] for c in cases]),
            "code": pa.array([c[0] for c in cases], pa.string()),
        }
    )
    out = pit(setup.store, entity, [select(view)])
    assert out.column_names == ["market_id", "event_timestamp", "code", "bid"]
    assert out.column("bid").to_pylist() == [c[3] for c in cases]
    assert out.column("market_id").type == pa.int32()
    latest = pulled(setup.store.pull_latest(view, FAR_PAST, FAR_FUTURE), ["code", "market_id"])
    assert [(r["code"], r["market_id"], r["bid"]) for r in latest] == [
        ("A", 1, 1.5),
        ("A", 2, 2.0),
        ("B", 1, 4.0),
        ("B", 3, 3.0),
    ]  # rows with a NULL key part are skipped


#: Two string keys whose parts run together alike, and strings a careless store folds together.
STRING_KEYS = [
    ("ab", "c"),
    ("a", "bc"),
    ("a", "b"),
    ("A", "b"),
    ("a ", "b"),
    ("a", "b "),
    ("O'Neil", 'x"y'),
    ("é", "\\"),
]


def test_string_keys_compare_exactly(offline: OfflineBuilder) -> None:
    setup = offline(
        {
            "books": feature_rows(
                {"code": [k[0] for k in STRING_KEYS], "venue": [k[1] for k in STRING_KEYS]},
                [0] * len(STRING_KEYS),
                {"depth": [float(i) for i in range(len(STRING_KEYS))]},
            )
        }
    )
    view = make_view(setup.sources["books"], "books", entities=[commodity, venue], features=["depth"])
    queries = [*STRING_KEYS, ("abc", ""), ("a", "B"), ("e\u0301", "\\"), ("", "abc")]
    entity = entity_rows({"code": [q[0] for q in queries], "venue": [q[1] for q in queries]}, [1] * len(queries))
    out = pit(setup.store, entity, [select(view)])
    assert out.column("depth").to_pylist() == [float(i) for i in range(len(STRING_KEYS))] + [None] * 4
    assert out.select(["code", "venue"]).to_pylist() == entity.select(["code", "venue"]).to_pylist()
    latest = pulled(setup.store.pull_latest(view, at(0), at(0)), ["code", "venue"])
    assert sorted((r["code"], r["venue"], r["depth"]) for r in latest) == sorted(
        (*k, float(i)) for i, k in enumerate(STRING_KEYS)
    )
