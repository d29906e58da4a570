"""Offline store conformance, point-in-time join: the same cases on every backend (``pytest -m duckdb``).

Feast's rules (docs/offline.md, /work/shared/reference/feast-compat.md): for each entity row and
view, the source row with the same keys and the greatest ``event_ts <= row ts`` wins (the highest
created timestamp among equal event times; a null created loses); with a ttl it must also have
``event_ts >= row ts - ttl`` (0 = no limit); no such row gives null; the entity frame's rows and
columns come back as they were, in order. Expected values are written out by hand, or computed by
``pandas.merge_asof`` for random data, never taken from a store.

Cases go through the protocol's ``historical`` (``pit``), except feature service projections,
which the SDK layer turns into selections (``retrieve``).
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from ladle import FeatureService, Int64

from .offline_backends import OfflineBuilder, OfflineSetup, SourceTable
from .offline_support import (
    TS,
    US,
    at,
    commodity,
    entity_rows,
    feature_rows,
    make_view,
    market,
    pit,
    reference_pit,
    retrieve,
    select,
)


def shuffled(spec: SourceTable, seed: int) -> SourceTable:
    """The same rows in another order (seed 0: as written)."""
    order = list(range(spec.table.num_rows))
    if seed:
        random.Random(seed).shuffle(order)
    return SourceTable(spec.table.take(order), spec.timestamp_field, spec.created_timestamp_column)


def prices_rows() -> SourceTable:
    """A at 0, 10, 20 (prices 1, 2, 3); B at 5 (price 10); no created column."""
    return feature_rows({"code": ["A", "A", "A", "B"]}, [0, 10, 20, 5], {"price": [1.0, 2.0, 3.0, 10.0]})


# -- which row is joined ----------------------------------------------------------------------------


def test_newest_row_at_or_before_the_entity_time(offline: OfflineBuilder) -> None:
    setup = offline({"prices": prices_rows()})
    view = make_view(setup.sources["prices"], "prices")
    cases = [
        ("A", -1, None),  # before the first row
        ("A", 0, 1.0),  # a row is visible at its own time
        ("A", 10 - US, 1.0),  # the row at 10 is not leaked a microsecond early
        ("A", 10, 2.0),
        ("A", 15, 2.0),
        ("A", 1000, 3.0),
        ("B", 5 - US, None),
        ("B", 5, 10.0),
        ("C", 30, None),  # an entity without rows
    ]
    entity = entity_rows({"code": [c[0] for c in cases]}, [c[1] for c in cases])
    out = pit(setup.store, entity, [select(view)])
    assert out.column("price").to_pylist() == [c[2] for c in cases]


def test_ttl_bounds_the_age_relative_to_each_row(offline: OfflineBuilder) -> None:
    setup = offline({"prices": prices_rows()})
    view = make_view(setup.sources["prices"], "prices", ttl=timedelta(minutes=5))
    cases = [
        ("A", 5, 1.0),  # the row at 0 is exactly ttl old: still valid
        ("A", 5 + US, None),  # a microsecond more is too old, and the row at 10 is in the future
        ("A", 9, None),
        ("A", 12, 2.0),
        ("A", 15, 2.0),
        ("A", 15 + US, None),
        ("A", 20, 3.0),
        ("B", 10, 10.0),
        ("B", 11, None),
    ]
    entity = entity_rows({"code": [c[0] for c in cases]}, [c[1] for c in cases])
    assert pit(setup.store, entity, [select(view)]).column("price").to_pylist() == [c[2] for c in cases]


def test_zero_ttl_means_no_age_limit(offline: OfflineBuilder) -> None:
    setup = offline({"prices": prices_rows()})
    view = make_view(setup.sources["prices"], "prices", ttl=timedelta(0))
    ten_years = 10 * 365 * 24 * 60
    entity = entity_rows({"code": ["B", "A", "B"]}, [ten_years, ten_years, 4])
    assert pit(setup.store, entity, [select(view)]).column("price").to_pylist() == [10.0, 3.0, None]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_created_timestamp_breaks_ties_in_any_row_order(offline: OfflineBuilder, seed: int) -> None:
    rows = feature_rows(
        {"code": ["A", "A", "A", "A", "A", "B", "B"]},
        [10, 10, 10, 10, 5, 10, 8],
        {"price": [1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0]},
        created=[11, 15, None, 13, 30, None, 9],
    )
    setup = offline({"prices": shuffled(rows, seed)})
    view = make_view(setup.sources["prices"], "prices")
    entity = entity_rows({"code": ["A", "A", "A", "B", "B"]}, [10, 9, 100, 10, 9])
    # A at 10: created 15 beats 13, 11 and a null; at 9 the row at 5 is used although it was created
    # at 30 (created times only order rows with equal event times); B: a newer event wins whatever
    # its created time, even a null one.
    assert pit(setup.store, entity, [select(view)]).column("price").to_pylist() == [2.0, 5.0, 2.0, 7.0, 8.0]


# -- several views, projections, names --------------------------------------------------------------


def multi_view_setup(offline: OfflineBuilder) -> tuple[OfflineSetup, list[Any]]:
    setup = offline(
        {
            "prices": feature_rows(
                {"code": ["A", "A", "B"]}, [0, 10, 5], {"price": [1.0, 2.0, 10.0], "volume": [10, 20, 100]}
            ),
            "quotes": feature_rows(
                {"code": ["A", "A", "B", "A"], "market_id": [1, 2, 1, 1]}, [0, 0, 0, 8], {"bid": [1.5, 2.5, 3.5, 1.75]}
            ),
            "rates": feature_rows({"market_id": [1, 2]}, [-100, 50], {"rate": [0.5, 0.75]}),
        }
    )
    views = [
        make_view(setup.sources["prices"], "prices", features=["price", ("volume", Int64)], ttl=timedelta(minutes=15)),
        make_view(
            setup.sources["quotes"], "quotes", entities=[commodity, market], features=["bid"], ttl=timedelta(hours=1)
        ),
        make_view(setup.sources["rates"], "rates", entities=[market], features=["rate"]),
    ]
    return setup, views


#: (code, market_id, minute) → price, bid, rate with the views of ``multi_view_setup``.
MULTI_CASES = [
    ("A", 1, 9, 1.0, 1.75, 0.5),
    ("A", 2, 9, 1.0, 2.5, None),  # market 2's rate starts at 50
    ("B", 1, 9, 10.0, 3.5, 0.5),
    ("B", 2, 30, None, None, None),  # B's price is 25 minutes old (ttl 15); no (B, 2) quote
    ("A", 1, 100, None, None, 0.5),  # the quote is 92 minutes old (ttl 60); rates have no ttl
    ("A", 2, 60, None, 2.5, 0.75),  # the (A, 2) quote is exactly one ttl old
]


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_several_views_with_their_own_keys_and_ttls(offline: OfflineBuilder, full_feature_names: bool) -> None:
    setup, (prices, quotes, rates) = multi_view_setup(offline)
    entity = entity_rows(
        {"code": [c[0] for c in MULTI_CASES], "market_id": [c[1] for c in MULTI_CASES]}, [c[2] for c in MULTI_CASES]
    )
    selections = [select(quotes), select(prices, "price"), select(rates)]
    out = pit(setup.store, entity, selections, full_feature_names)
    names = ["quotes__bid", "prices__price", "rates__rate"] if full_feature_names else ["bid", "price", "rate"]
    assert out.column_names == ["code", "market_id", "event_timestamp", *names]
    assert out.column(names[1]).to_pylist() == [c[3] for c in MULTI_CASES]
    assert out.column(names[0]).to_pylist() == [c[4] for c in MULTI_CASES]
    assert out.column(names[2]).to_pylist() == [c[5] for c in MULTI_CASES]


def test_projections_aliases_and_join_key_maps(offline: OfflineBuilder) -> None:
    setup, (prices, quotes, rates) = multi_view_setup(offline)
    service = FeatureService(
        name="training",
        features=[prices[["volume"]], quotes.with_name("q").with_join_key_map({"code": "underlying"})],
    )
    frame = pd.DataFrame(
        {
            "underlying": ["A", "B", "A"],
            "code": ["B", "A", "A"],
            "market_id": [1, 1, 2],
            "event_timestamp": [at(9), at(9), at(9)],
        }
    )
    out = retrieve(setup, [prices, quotes, rates], frame, service, full_feature_names=True)
    assert out.column_names == ["underlying", "code", "market_id", "event_timestamp", "prices__volume", "q__bid"]
    assert out.column("prices__volume").to_pylist() == [100, 10, 10]  # by "code"
    assert out.column("q__bid").to_pylist() == [1.75, 3.5, 2.5]  # by "underlying" and market_id
    plain = retrieve(setup, [prices, quotes, rates], frame.drop(columns="underlying"), ["prices:volume"])
    assert plain.column_names == ["code", "market_id", "event_timestamp", "volume"]
    assert plain.column("volume").to_pylist() == [100, 10, 10]


def test_entity_frame_rows_and_columns_come_back_unchanged(offline: OfflineBuilder) -> None:
    setup = offline({"prices": prices_rows()})
    view = make_view(setup.sources["prices"], "prices")
    minutes = [11, 5, 11, 0, 11, -3]
    entity = pa.table(
        {
            "label": pa.array([1, 0, 1, 1, 1, 0], pa.int8()),
            "event_timestamp": pa.array([at(m) for m in minutes], TS),
            "code": ["A", "B", "A", "A", "A", "A"],
            "note": ["x", "y", "x", None, "z", "w"],
        }
    )
    out = pit(setup.store, entity, [select(view)])
    assert out.column_names == ["label", "event_timestamp", "code", "note", "price"]
    assert out.num_rows == 6  # duplicated entity rows are kept
    for name in ("label", "code", "note"):
        assert out.column(name).type == entity.column(name).type
        assert out.column(name).to_pylist() == entity.column(name).to_pylist()
    assert out.column("event_timestamp").to_pylist() == [at(m) for m in minutes]
    assert out.column("price").to_pylist() == [2.0, 10.0, 2.0, 1.0, 2.0, None]


# -- random data against pandas.merge_asof ----------------------------------------------------------


def random_case(seed: int) -> tuple[SourceTable, SourceTable, pd.DataFrame]:
    """Two sources (one with created times, one with a compound key) and an entity frame.

    Event minutes are drawn from a small range, so equal event times are common; created times are
    all different, and the compound-key source has one row per (key, minute): every answer is unique.
    """
    rng = random.Random(seed)
    n = 60
    codes = [rng.choice("ABC") for _ in range(n)]
    ticks = feature_rows(
        {"code": codes},
        [rng.randint(0, 30) for _ in range(n)],
        {"price": [float(i) for i in range(n)]},
        created=[float(c) for c in rng.sample(range(1000), n)],
    )
    slots = rng.sample([(c, m, t) for c in "AB" for m in (1, 2) for t in range(0, 40, 2)], 30)
    books = feature_rows(
        {"code": [s[0] for s in slots], "market_id": [s[1] for s in slots]},
        [s[2] for s in slots],
        {"depth": [100.0 + i for i in range(len(slots))]},
    )
    m = 50
    entity = pd.DataFrame(
        {
            "code": [rng.choice("ABCD") for _ in range(m)],
            "market_id": [rng.choice((1, 2, 3)) for _ in range(m)],
            "event_timestamp": [at(rng.randint(-5, 45)) for _ in range(m)],
        }
    )
    return ticks, books, entity


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_pandas_merge_asof_on_random_data(offline: OfflineBuilder, seed: int) -> None:
    ticks, books, entity = random_case(seed)
    setup = offline({"ticks": ticks, "books": books})
    ticks_ttl, books_ttl = timedelta(minutes=7), timedelta(0)
    tick_view = make_view(setup.sources["ticks"], "ticks", ttl=ticks_ttl)
    book_view = make_view(setup.sources["books"], "books", entities=[commodity, market], features=["depth"])
    out = pit(setup.store, pa.Table.from_pandas(entity, preserve_index=False), [select(tick_view), select(book_view)])
    ticks_df, books_df = ticks.table.to_pandas(), books.table.to_pandas()
    assert out.column("price").to_pylist() == reference_pit(entity, ticks_df, ["code"], "price", ticks_ttl, "created")
    assert out.column("depth").to_pylist() == reference_pit(entity, books_df, ["code", "market_id"], "depth", books_ttl)


# -- time zones and units ---------------------------------------------------------------------------

ZONED_SOURCE = ([0, 60, 120], [1.0, 2.0, 3.0])  # New York moves its clocks at minute 60
ZONED_CASES = [(-1, None), (59, 1.0), (60, 2.0), (61, 2.0), (119, 2.0), (120, 3.0), (500, 3.0)]


@pytest.mark.parametrize(
    "ts_type",
    [
        pa.timestamp("us"),  # naive: UTC
        pa.timestamp("us", tz="UTC"),
        pa.timestamp("ns", tz="America/New_York"),
        pa.timestamp("ms", tz="Asia/Kolkata"),
        pa.timestamp("s", tz="+05:45"),
        pa.timestamp("ns"),
    ],
    ids=str,
)
def test_entity_timestamps_in_any_zone_and_unit(offline: OfflineBuilder, ts_type: pa.DataType) -> None:
    minutes, prices = ZONED_SOURCE
    setup = offline({"prices": feature_rows({"code": ["A"] * 3}, minutes, {"price": prices})})
    view = make_view(setup.sources["prices"], "prices")
    entity = entity_rows({"code": ["A"] * len(ZONED_CASES)}, [c[0] for c in ZONED_CASES], ts_type)
    out = pit(setup.store, entity, [select(view)])
    assert out.column("price").to_pylist() == [c[1] for c in ZONED_CASES]
    assert out.column("event_timestamp").to_pylist() == [at(c[0]) for c in ZONED_CASES]


def test_pandas_entity_frames_naive_utc_and_new_york_agree(offline: OfflineBuilder) -> None:
    minutes, prices = ZONED_SOURCE
    setup = offline({"prices": feature_rows({"code": ["A"] * 3}, minutes, {"price": prices})})
    view = make_view(setup.sources["prices"], "prices")
    utc = pd.DatetimeIndex([at(c[0]) for c in ZONED_CASES])
    for stamps_ in (utc, utc.tz_convert("America/New_York"), utc.tz_localize(None)):
        frame = pd.DataFrame({"code": ["A"] * len(ZONED_CASES), "event_timestamp": stamps_})
        out = retrieve(setup, [view], frame, ["prices:price"])
        assert out.column("price").to_pylist() == [c[1] for c in ZONED_CASES], stamps_.dtype


@pytest.mark.parametrize(
    ("event_type", "created_type"),
    [
        (pa.timestamp("ns"), pa.timestamp("ms", tz="America/New_York")),
        (pa.timestamp("ms", tz="America/New_York"), pa.timestamp("s", tz="Asia/Tokyo")),
        (pa.timestamp("s", tz="Asia/Tokyo"), pa.timestamp("ns")),
        (pa.timestamp("ns", tz="UTC"), pa.timestamp("us")),
    ],
    ids=str,
)
def test_source_timestamps_in_any_zone_and_unit(
    offline: OfflineBuilder, event_type: pa.DataType, created_type: pa.DataType
) -> None:
    rows = feature_rows(
        {"code": ["A", "A", "A", "B"]},
        [0, 60, 60, 30],
        {"price": [1.0, 2.0, 3.0, 4.0]},
        created=[1, 62, 61, 30],
        event_type=event_type,
        created_type=created_type,
    )
    setup = offline({"prices": rows})
    view = make_view(setup.sources["prices"], "prices", ttl=timedelta(minutes=45))
    cases = [
        ("A", 45, 1.0),
        ("A", 59, None),
        ("A", 60, 2.0),  # created 62 beats 61 whatever the columns' zones
        ("A", 105, 2.0),
        ("A", 106, None),
        ("B", 29, None),
        ("B", 75, 4.0),
        ("B", 76, None),
    ]
    entity = entity_rows({"code": [c[0] for c in cases]}, [c[1] for c in cases])
    assert pit(setup.store, entity, [select(view)]).column("price").to_pylist() == [c[2] for c in cases]
