"""Online store conformance: the same cases on every backend (``-m sqlite``, ``-m redis``, ``-m redis_cluster``).

Written against the protocol in ``ladle/online/base.py`` only: write, read, update, delete_view,
teardown, ping. Expected values come from the test's own data, never from the implementation.
"""

from __future__ import annotations

import math
import multiprocessing
import random
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ladle import (
    Array,
    Bool,
    Bytes,
    Entity,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
    ValueType,
)
from ladle.errors import SchemaMismatchError
from ladle.online.base import BatchWriter, OnlineStore, ReadRequest, ViewRows
from ladle.online.keys import DUMMY_JOIN_KEY
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP, DType

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z in µs
TS = pa.timestamp("us", tz="UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
venue = Entity(name="venue", join_keys=["venue_id"], value_type=ValueType.INT64)
station = Entity(name="station", join_keys=["station"], value_type=ValueType.INT32)
source = FileSource(path="unused.parquet", timestamp_field="event_timestamp", created_timestamp_column="created")


def make_view(
    name: str = "prices",
    features: Sequence[tuple[str, DType]] = (("price", Float64), ("volume", Int64)),
    entities: Sequence[Entity] = (commodity,),
) -> FeatureView:
    """A view over ``entities`` with the given features."""
    return FeatureView(
        name=name,
        source=source,
        entities=list(entities),
        schema=[Field(name=n, dtype=d) for n, d in features],
        ttl=timedelta(days=1),
    )


def rows(
    view: FeatureView,
    keys: dict[str, list[Any]],
    values: dict[str, list[Any]],
    event: list[int],
    created: list[int] | None = None,
) -> pa.Table:
    """A write batch: join keys, features (typed by the view), event and created timestamps (µs)."""
    dtypes = {f.name: f.dtype for f in (*view.entity_columns, *view.features)}
    columns: dict[str, pa.Array] = {k: pa.array(v, dtypes[k].arrow) for k, v in keys.items()}
    columns.update({k: pa.array(v, dtypes[k].arrow) for k, v in values.items()})
    columns[EVENT_TIMESTAMP] = pa.array(event, pa.int64()).cast(TS)
    if created is not None:
        columns[CREATED_TIMESTAMP] = pa.array(created, pa.int64()).cast(TS)
    return pa.table(columns)


def read1(store: OnlineStore, project: str, view: FeatureView, keys: dict[str, list[Any]]) -> ViewRows:
    """Read every feature of one view."""
    return store.read(project, [ReadRequest(view, view.feature_names, keys)])[0]


# -- basics ---------------------------------------------------------------------------------------------


def test_write_then_read(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    n = online_store.write(
        project,
        view,
        rows(view, {"commodity_code": ["WTI", "BRENT"]}, {"price": [71.5, 75.25], "volume": [10, 20]}, [T0, T0 + 5]),
    )
    assert n == 2
    got = read1(online_store, project, view, {"commodity_code": ["BRENT", "WTI"]})
    assert got.event_ts == [T0 + 5, T0]
    assert got.values == {"price": [75.25, 71.5], "volume": [20, 10]}


def test_missing_entities_and_order(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    online_store.write(
        project, view, rows(view, {"commodity_code": ["A", "B"]}, {"price": [1.0, 2.0], "volume": [1, 2]}, [T0, T0])
    )
    got = read1(online_store, project, view, {"commodity_code": ["nope", "B", "A", "B", "also-nope"]})
    assert got.event_ts == [None, T0, T0, T0, None]
    assert got.values["price"] == [None, 2.0, 1.0, 2.0, None]
    assert got.values["volume"] == [None, 2, 1, 2, None]


def test_read_of_a_never_written_view(online_store: OnlineStore, project: str) -> None:
    view = make_view("never_written")
    got = read1(online_store, project, view, {"commodity_code": ["A", "B"]})
    assert got.event_ts == [None, None]
    assert got.values == {"price": [None, None], "volume": [None, None]}


def test_read_a_subset_of_features(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    online_store.write(project, view, rows(view, {"commodity_code": ["A"]}, {"price": [3.5], "volume": [7]}, [T0]))
    got = online_store.read(project, [ReadRequest(view, ["volume"], {"commodity_code": ["A"]})])[0]
    assert got.values == {"volume": [7]}


def test_features_missing_from_a_write_are_null(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    online_store.write(project, view, rows(view, {"commodity_code": ["A"]}, {"price": [1.0], "volume": [1]}, [T0]))
    online_store.write(project, view, rows(view, {"commodity_code": ["A"]}, {"price": [2.0]}, [T0 + 1]))
    got = read1(online_store, project, view, {"commodity_code": ["A"]})
    assert got.values == {"price": [2.0], "volume": [None]}


def test_write_without_join_key_or_timestamp_is_rejected(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    no_key = pa.table({"price": [1.0], EVENT_TIMESTAMP: pa.array([T0], pa.int64()).cast(TS)})
    no_ts = pa.table({"commodity_code": ["A"], "price": [1.0]})
    for bad in (no_key, no_ts):
        with pytest.raises(SchemaMismatchError):
            online_store.write(project, view, bad)
    assert read1(online_store, project, view, {"commodity_code": ["A"]}).event_ts == [None]


def test_empty_write_and_empty_read(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    assert online_store.write(project, view, rows(view, {"commodity_code": []}, {"price": [], "volume": []}, [])) == 0
    got = read1(online_store, project, view, {"commodity_code": []})
    assert got.event_ts == []


def test_ping(online_store: OnlineStore) -> None:
    online_store.ping()


# -- newest event wins --------------------------------------------------------------------------------


def test_older_write_never_replaces_newer(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    online_store.write(project, view, rows(view, {"commodity_code": ["A"]}, {"price": [2.0], "volume": [2]}, [T0 + 10]))
    written = online_store.write(
        project, view, rows(view, {"commodity_code": ["A"]}, {"price": [1.0], "volume": [1]}, [T0 + 9])
    )
    assert written == 0
    got = read1(online_store, project, view, {"commodity_code": ["A"]})
    assert (got.event_ts, got.values["price"]) == ([T0 + 10], [2.0])


def test_newest_wins_within_one_batch(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    rng = random.Random(7)
    events = [(k, T0 + t) for k in ("A", "B", "C") for t in range(50)]
    rng.shuffle(events)
    batch = rows(
        view,
        {"commodity_code": [k for k, _ in events]},
        {"price": [float(t - T0) for _, t in events], "volume": [t - T0 for _, t in events]},
        [t for _, t in events],
    )
    online_store.write(project, view, batch)
    got = read1(online_store, project, view, {"commodity_code": ["A", "B", "C"]})
    assert got.event_ts == [T0 + 49] * 3
    assert got.values == {"price": [49.0] * 3, "volume": [49] * 3}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_newest_wins_in_any_arrival_order(online_store: OnlineStore, project: str, seed: int) -> None:
    view = make_view()
    stamps = list(range(30))
    random.Random(seed).shuffle(stamps)
    for t in stamps:
        online_store.write(
            project, view, rows(view, {"commodity_code": ["A"]}, {"price": [float(t)], "volume": [t]}, [T0 + t])
        )
    got = read1(online_store, project, view, {"commodity_code": ["A"]})
    assert got.event_ts == [T0 + 29]
    assert got.values == {"price": [29.0], "volume": [29]}


def test_equal_event_time_newer_created_wins(online_store: OnlineStore, project: str) -> None:
    view = make_view()

    def put(price: float, created: int) -> int:
        return online_store.write(
            project, view, rows(view, {"commodity_code": ["A"]}, {"price": [price], "volume": [1]}, [T0], [created])
        )

    put(1.0, T0 + 5)
    assert put(2.0, T0 + 3) == 0  # older created: dropped
    assert read1(online_store, project, view, {"commodity_code": ["A"]}).values["price"] == [1.0]
    assert put(3.0, T0 + 8) == 1  # newer created: replaces
    assert read1(online_store, project, view, {"commodity_code": ["A"]}).values["price"] == [3.0]
    assert put(4.0, T0 + 8) == 1  # equal created: replaces (the protocol's rule)
    assert read1(online_store, project, view, {"commodity_code": ["A"]}).values["price"] == [4.0]


def test_equal_event_time_created_order_within_one_batch(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    batch = rows(
        view,
        {"commodity_code": ["A"] * 3},
        {"price": [1.0, 3.0, 2.0], "volume": [1, 3, 2]},
        [T0] * 3,
        [T0 + 1, T0 + 3, T0 + 2],
    )
    online_store.write(project, view, batch)
    assert read1(online_store, project, view, {"commodity_code": ["A"]}).values["price"] == [3.0]


def test_full_tie_within_one_batch_last_row_wins(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    keys = ["B", "A", "B", "A", "C"]
    batch = rows(
        view,
        {"commodity_code": keys},
        {"price": [1.0, 2.0, 3.0, 4.0, 5.0], "volume": [1, 2, 3, 4, 5]},
        [T0] * 5,
        [T0] * 5,
    )
    online_store.write(project, view, batch)
    assert read1(online_store, project, view, {"commodity_code": ["A", "B", "C"]}).values["price"] == [4.0, 3.0, 5.0]


def test_write_batches_if_supported(online_store: OnlineStore, project: str) -> None:
    if not isinstance(online_store, BatchWriter):
        pytest.skip("this backend has no write_batches (optional capability)")
    view = make_view()
    batches = [
        rows(view, {"commodity_code": ["A", "B"]}, {"price": [2.0, 1.0], "volume": [2, 1]}, [T0 + 2, T0 + 1]),
        rows(view, {"commodity_code": ["A", "C"]}, {"price": [1.0, 3.0], "volume": [1, 3]}, [T0 + 1, T0 + 3]),
        rows(view, {"commodity_code": []}, {"price": [], "volume": []}, []),
        rows(view, {"commodity_code": ["B"]}, {"price": [4.0], "volume": [4]}, [T0 + 4]),
    ]
    assert online_store.write_batches(project, view, iter(batches)) == 4  # A's older row was dropped
    got = read1(online_store, project, view, {"commodity_code": ["A", "B", "C"]})
    assert got.values["price"] == [2.0, 4.0, 3.0]
    assert got.event_ts == [T0 + 2, T0 + 4, T0 + 3]


def _writer(opener: Callable[[], OnlineStore], project: str, view: FeatureView, stamps: list[int]) -> None:
    store = opener()
    try:
        keys = ["A", "B", "C", "D"]
        for start in range(0, len(stamps), 5):
            part = stamps[start : start + 5]
            batch = rows(
                view,
                {"commodity_code": [keys[t % 4] for t in part]},
                {"price": [float(t) for t in part], "volume": part},
                [T0 + t for t in part],
            )
            store.write(project, view, batch)
    finally:
        store.close()


def _expect_latest(store: OnlineStore, project: str, view: FeatureView, stamps: list[int]) -> None:
    got = read1(store, project, view, {"commodity_code": ["A", "B", "C", "D"]})
    latest = [max(t for t in stamps if t % 4 == k) for k in range(4)]
    assert got.event_ts == [T0 + t for t in latest]
    assert got.values["volume"] == latest
    assert got.values["price"] == [float(t) for t in latest]


def test_concurrent_writer_processes(
    online_opener: Callable[[], OnlineStore], online_store: OnlineStore, project: str
) -> None:
    view = make_view()
    stamps = list(range(400))
    random.Random(11).shuffle(stamps)
    shares = [stamps[i::3] for i in range(3)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(online_opener, project, view, share)) for share in shares]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    _expect_latest(online_store, project, view, stamps)


def test_concurrent_writer_threads(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    stamps = list(range(300))
    random.Random(5).shuffle(stamps)
    errors: list[BaseException] = []

    def run(share: list[int]) -> None:
        try:
            for t in share:
                batch = rows(
                    view,
                    {"commodity_code": [["A", "B", "C", "D"][t % 4]]},
                    {"price": [float(t)], "volume": [t]},
                    [T0 + t],
                )
                online_store.write(project, view, batch)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(stamps[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    _expect_latest(online_store, project, view, stamps)


def _reader(opener: Callable[[], OnlineStore], project: str, view: FeatureView, rounds: int, queue: Any) -> None:
    store = opener()
    seen = set()
    torn_rows = 0
    try:
        for _ in range(rounds):
            got = read1(store, project, view, {"commodity_code": [f"K{i}" for i in range(50)]})
            if got.event_ts[0] is not None:
                seen.add(tuple(got.event_ts))
            # Write t stores price t at event time T0 + t: a row with any other pair is torn.
            torn_rows += sum(
                1
                for ts, price in zip(got.event_ts, got.values["price"], strict=True)
                if ts is not None and price != float(ts - T0)
            )
        queue.put((sorted({len(set(ts)) for ts in seen}), torn_rows))
    finally:
        store.close()


def _row_atomic_only(backend: str) -> bool:
    try:
        from .redis_backends import ROW_ATOMIC_ONLY
    except ImportError:
        return False
    return backend in ROW_ATOMIC_ONLY


def test_readers_see_whole_writes(
    online_backend: str, online_opener: Callable[[], OnlineStore], online_store: OnlineStore, project: str
) -> None:
    """A reader process never sees half of a write: all 50 entities of each batch share one event time.

    Backends that are atomic per row only (Redis Cluster, see ``redis_backends.ROW_ATOMIC_ONLY``) must
    still never show a torn row.
    """
    view = make_view()
    codes = [f"K{i}" for i in range(50)]
    online_store.write(project, view, rows(view, {"commodity_code": codes}, {"price": [0.0] * 50}, [T0] * 50))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    reader = ctx.Process(target=_reader, args=(online_opener, project, view, 300, queue))
    reader.start()
    for t in range(1, 150):
        online_store.write(
            project, view, rows(view, {"commodity_code": codes}, {"price": [float(t)] * 50}, [T0 + t] * 50)
        )
    reader.join(60)
    assert reader.exitcode == 0
    distinct_times, torn_rows = queue.get(timeout=5)
    assert torn_rows == 0
    if not _row_atomic_only(online_backend):
        assert distinct_times == [1]  # every observed read: one distinct event time across the batch


# -- values --------------------------------------------------------------------------------------------

_DT = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
DTYPE_CASES: list[tuple[DType, list[Any]]] = [
    (Int32, [-(2**31), 2**31 - 1, 0, None]),
    (Int64, [-(2**63), 2**63 - 1, 42, None]),
    (Float32, [1.5, -0.0, 2.0**127, None]),  # exactly representable in float32
    (Float64, [1.0e-300, -2.5, math.pi, None]),
    (String, ["", "crude oil — WTI", "日本語", None]),
    (Bytes, [b"", b"\x00\xff\x00", bytes(range(256)), None]),
    (Bool, [True, False, True, None]),
    (UnixTimestamp, [EPOCH, _DT, datetime(2262, 4, 11, tzinfo=UTC), None]),
    (Array(Int32), [[], [1, -2, 2**31 - 1], [0], None]),
    (Array(Int64), [[2**63 - 1, -(2**63)], [], [7], None]),
    (Array(Float32), [[1.5, -2.25], [], [0.0], None]),
    (Array(Float64), [[math.e, 1e300], [], [-0.5], None]),
    (Array(String), [["a", "", "ü"], [], ["x"], None]),
    (Array(Bytes), [[b"\x00", b""], [], [b"abc"], None]),
    (Array(Bool), [[True, False], [], [False], None]),
    (Array(UnixTimestamp), [[EPOCH, _DT], [], [_DT], None]),
]


@pytest.mark.parametrize(("dtype", "values"), DTYPE_CASES, ids=[d.name for d, _ in DTYPE_CASES])
def test_every_dtype_round_trips(online_store: OnlineStore, project: str, dtype: DType, values: list[Any]) -> None:
    view = make_view(features=[("value", dtype), ("other", Float64)])
    keys = ["k0", "k1", "k2", "k3"]
    online_store.write(
        project, view, rows(view, {"commodity_code": keys}, {"value": values, "other": [1.0] * 4}, [T0] * 4)
    )
    got = read1(online_store, project, view, {"commodity_code": keys})
    assert got.values["value"] == values
    assert got.values["other"] == [1.0] * 4
    single = [read1(online_store, project, view, {"commodity_code": [k]}).values["value"][0] for k in keys]
    assert single == values


def test_float32_keeps_float32_precision(online_store: OnlineStore, project: str) -> None:
    view = make_view(features=[("value", Float32)])
    online_store.write(project, view, rows(view, {"commodity_code": ["A"]}, {"value": [0.1]}, [T0]))
    got = read1(online_store, project, view, {"commodity_code": ["A"]}).values["value"][0]
    assert got == float(np.float32(0.1))


def test_float_nan_is_stored_as_null(online_store: OnlineStore, project: str) -> None:
    view = make_view(features=[("value", Float64)])
    batch = pa.table(
        {
            "commodity_code": ["A", "B"],
            "value": pa.array([float("nan"), 1.0], pa.float64()),
            EVENT_TIMESTAMP: pa.array([T0, T0], pa.int64()).cast(TS),
        }
    )
    online_store.write(project, view, batch)
    assert read1(online_store, project, view, {"commodity_code": ["A", "B"]}).values["value"] == [None, 1.0]


def test_null_features_keep_the_row(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    online_store.write(project, view, rows(view, {"commodity_code": ["A"]}, {"price": [None], "volume": [None]}, [T0]))
    got = read1(online_store, project, view, {"commodity_code": ["A"]})
    assert got.event_ts == [T0]  # a stored null is not a missing entity
    assert got.values == {"price": [None], "volume": [None]}


def test_new_feature_added_after_writes(online_store: OnlineStore, project: str) -> None:
    before = make_view(features=[("price", Float64)])
    online_store.update(project, keep=[before], delete=[])
    online_store.write(project, before, rows(before, {"commodity_code": ["A", "B"]}, {"price": [1.0, 2.0]}, [T0, T0]))
    after = make_view(features=[("price", Float64), ("signal", String)])
    online_store.update(project, keep=[after], delete=[])
    online_store.write(
        project, after, rows(after, {"commodity_code": ["B"]}, {"price": [3.0], "signal": ["buy"]}, [T0 + 1])
    )
    got = read1(online_store, project, after, {"commodity_code": ["A", "B", "C"]})
    assert got.event_ts == [T0, T0 + 1, None]
    assert got.values == {"price": [1.0, 3.0, None], "signal": [None, "buy", None]}


# -- keys ----------------------------------------------------------------------------------------------


def test_composite_keys(online_store: OnlineStore, project: str) -> None:
    view = make_view("quotes", [("bid", Float64)], entities=[venue, commodity])
    online_store.write(
        project,
        view,
        rows(
            view, {"venue_id": [1, 2, 1], "commodity_code": ["WTI", "WTI", "BRENT"]}, {"bid": [1.0, 2.0, 3.0]}, [T0] * 3
        ),
    )
    got = read1(
        online_store, project, view, {"commodity_code": ["BRENT", "WTI", "WTI", "BRENT"], "venue_id": [1, 2, 1, 2]}
    )
    assert got.values["bid"] == [3.0, 2.0, 1.0, None]
    assert got.event_ts == [T0, T0, T0, None]


def test_int_keys(online_store: OnlineStore, project: str) -> None:
    view64 = make_view("by_venue", [("depth", Int64)], entities=[venue])
    view32 = make_view("by_station", [("temp", Float32)], entities=[station])
    online_store.write(project, view64, rows(view64, {"venue_id": [2**40, -1]}, {"depth": [5, 6]}, [T0, T0]))
    online_store.write(project, view32, rows(view32, {"station": [7, -(2**31)]}, {"temp": [1.5, 2.5]}, [T0, T0]))
    got = online_store.read(
        project,
        [
            ReadRequest(view64, ["depth"], {"venue_id": [-1, 2**40, 3]}),
            ReadRequest(view32, ["temp"], {"station": [-(2**31), 7]}),
        ],
    )
    assert got[0].values["depth"] == [6, 5, None]
    assert got[1].values["temp"] == [2.5, 1.5]


def test_key_values_with_separators_and_braces(online_store: OnlineStore, project: str) -> None:
    view = make_view("odd_keys", [("bid", Float64)], entities=[venue, commodity])
    codes = ["a:b", "a", "}{", "", "1:x"]
    ids = [1, 11, 2, -3, 1]
    online_store.write(
        project,
        view,
        rows(view, {"venue_id": ids, "commodity_code": codes}, {"bid": [1.0, 2.0, 3.0, 4.0, 5.0]}, [T0] * 5),
    )
    got = read1(
        online_store, project, view, {"commodity_code": [*reversed(codes), "b"], "venue_id": [*reversed(ids), 1]}
    )
    assert got.values["bid"] == [5.0, 4.0, 3.0, 2.0, 1.0, None]


def test_view_without_entities(online_store: OnlineStore, project: str) -> None:
    view = make_view("totals", [("count", Int64)], entities=[])
    online_store.write(project, view, rows(view, {}, {"count": [7]}, [T0]))
    got = read1(online_store, project, view, {DUMMY_JOIN_KEY: ["", ""]})
    assert got.values["count"] == [7, 7]
    assert got.event_ts == [T0, T0]


def test_several_views_per_entity_in_one_read(online_store: OnlineStore, project: str) -> None:
    prices = make_view("prices")
    weather = make_view("weather", [("temp", Float64)])
    online_store.write(project, prices, rows(prices, {"commodity_code": ["A"]}, {"price": [1.0], "volume": [1]}, [T0]))
    online_store.write(
        project, weather, rows(weather, {"commodity_code": ["A", "B"]}, {"temp": [20.0, 21.0]}, [T0 + 1, T0 + 2])
    )
    got = online_store.read(
        project,
        [
            ReadRequest(prices, ["price"], {"commodity_code": ["B", "A"]}),
            ReadRequest(weather, ["temp"], {"commodity_code": ["B", "A"]}),
        ],
    )
    assert (got[0].event_ts, got[0].values) == ([None, T0], {"price": [None, 1.0]})
    assert (got[1].event_ts, got[1].values) == ([T0 + 2, T0 + 1], {"temp": [21.0, 20.0]})


# -- lifecycle -----------------------------------------------------------------------------------------


def test_delete_view_leaves_other_views(online_store: OnlineStore, project: str) -> None:
    prices = make_view("prices")
    weather = make_view("weather", [("temp", Float64)])
    online_store.update(project, keep=[prices, weather], delete=[])
    online_store.write(project, prices, rows(prices, {"commodity_code": ["A"]}, {"price": [1.0], "volume": [1]}, [T0]))
    online_store.write(project, weather, rows(weather, {"commodity_code": ["A"]}, {"temp": [20.0]}, [T0]))
    online_store.delete_view(project, prices)
    assert read1(online_store, project, prices, {"commodity_code": ["A"]}).event_ts == [None]
    assert read1(online_store, project, weather, {"commodity_code": ["A"]}).values == {"temp": [20.0]}
    online_store.write(
        project, prices, rows(prices, {"commodity_code": ["A"]}, {"price": [5.0], "volume": [5]}, [T0 - 1])
    )
    assert read1(online_store, project, prices, {"commodity_code": ["A"]}).values["price"] == [5.0]


def test_update_deletes_removed_views(online_store: OnlineStore, project: str) -> None:
    prices = make_view("prices")
    weather = make_view("weather", [("temp", Float64)])
    online_store.write(project, prices, rows(prices, {"commodity_code": ["A"]}, {"price": [1.0], "volume": [1]}, [T0]))
    online_store.write(project, weather, rows(weather, {"commodity_code": ["A"]}, {"temp": [20.0]}, [T0]))
    online_store.update(project, keep=[weather], delete=[prices])
    assert read1(online_store, project, prices, {"commodity_code": ["A"]}).event_ts == [None]
    assert read1(online_store, project, weather, {"commodity_code": ["A"]}).event_ts == [T0]


def test_teardown_removes_only_its_project(
    online_opener: Callable[[], OnlineStore], online_store: OnlineStore, project: str
) -> None:
    view = make_view()
    other = f"{project}_other"
    prefix = project[:-2]  # a project whose name is a prefix of ours must survive too
    for p in (project, other, prefix):
        online_store.write(p, view, rows(view, {"commodity_code": ["A"]}, {"price": [1.0], "volume": [1]}, [T0]))
    try:
        online_store.teardown(project, [view])
        assert read1(online_store, project, view, {"commodity_code": ["A"]}).event_ts == [None]
        fresh = online_opener()  # another instance sees the same
        try:
            for p in (other, prefix):
                assert read1(fresh, p, view, {"commodity_code": ["A"]}).values["price"] == [1.0]
            assert read1(fresh, project, view, {"commodity_code": ["A"]}).event_ts == [None]
        finally:
            fresh.close()
    finally:
        online_store.teardown(other, [view])
        online_store.teardown(prefix, [view])


def test_large_batch_write(online_store: OnlineStore, project: str) -> None:
    view = make_view()
    n = 120_000
    codes = [f"CMD{i:06d}" for i in range(n)]
    volume = np.arange(n, dtype=np.int64)
    batch = pa.table(
        {
            "commodity_code": codes,
            "price": volume.astype(np.float64) / 4,
            "volume": volume,
            EVENT_TIMESTAMP: pa.array(T0 + volume, pa.int64()).cast(TS),
        }
    )
    assert online_store.write(project, view, batch) == n
    sample = random.Random(3).sample(range(n), 500)
    got = read1(online_store, project, view, {"commodity_code": [codes[i] for i in sample]})
    assert got.values["volume"] == sample
    assert got.values["price"] == [i / 4 for i in sample]
    assert got.event_ts == [T0 + i for i in sample]
