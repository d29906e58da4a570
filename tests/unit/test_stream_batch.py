"""The DuckDB batch execution of stream feature views against the reference semantics.

The property test draws random event sequences (few keys and few distinct times, so duplicates of
an identity are common; out of order; missing values; string, integer and composite keys; with and
without a created column and Kafka offsets) and random views (all eight functions, continuous and
hopping windows, with and without udf and derive), feeds the same events to
``tests/streaming/reference.expected`` (as arrivals, nothing late) and to ``compute`` (as an Arrow
table), and requires the same output rows with the same values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladle import Aggregation, Entity, Field, FileSource, Float64, Int64, JsonFormat, KafkaSource, StreamFeatureView
from ladle.aggregation.batch import compute
from ladle.definitions.stream_feature_view import AGGREGATION_FUNCTIONS
from ladle.errors import DataSourceError, DefinitionError
from ladle.types import ValueType
from streaming.reference import Arrival, close, expected

CON = duckdb.connect()
S = 1_000_000  # one second in microseconds
TS, CREATED = "event_timestamp", "created"
BASES = [0, 1_733_400_000 * S]  # around the epoch (negative times) and in 2024

code = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)
market = Entity(name="market", join_keys=["market_id"], value_type=ValueType.INT64)
KEYSETS: dict[str, list[Entity]] = {"str": [code], "int": [market], "composite": [code, market]}
CODES = ["CL", "GC", "NG"]


def scale_and_filter(df: pd.DataFrame) -> pd.DataFrame:
    """A udf: doubles the price and drops the events with a large volume."""
    out = df.assign(price=df["price"] * 2)
    return out[~(out["volume"] > 800)]


def add_double(df: pd.DataFrame) -> pd.DataFrame:
    """A derive: one more feature from the first aggregate."""
    return df.assign(d=df["a0"] * 2.0)


def source(created: bool) -> KafkaSource:
    """A Kafka source whose watermark delay is long enough that no drawn event is late."""
    return KafkaSource(
        name="ticks",
        kafka_bootstrap_servers="127.0.0.1:9092",
        topic="ticks",
        timestamp_field=TS,
        created_timestamp_column=CREATED if created else "",
        message_format=JsonFormat(),
        batch_source=FileSource(
            path="data/ticks/", timestamp_field=TS, created_timestamp_column=CREATED if created else ""
        ),
        watermark_delay_threshold=timedelta(days=1),
    )


@dataclass(frozen=True)
class Case:
    view: StreamFeatureView
    rows: list[dict[str, Any]]  # in arrival order, times as int µs
    offsets: bool  # give compute the _kafka_* columns (and shuffle its input rows)
    seed: int


prices = st.one_of(st.none(), st.integers(1, 1_000_000).map(lambda c: c / 100))
volumes = st.one_of(st.none(), st.integers(0, 1000))


@st.composite
def views(draw: st.DrawFn) -> StreamFeatureView:
    keys = KEYSETS[draw(st.sampled_from(sorted(KEYSETS)))]
    created = draw(st.booleans())
    udf = scale_and_filter if draw(st.booleans()) else None
    n_aggs = draw(st.integers(0, 5))
    if n_aggs == 0:
        schema = [Field(name="price", dtype=Float64), Field(name="volume", dtype=Int64)]
        return StreamFeatureView(name="v", source=source(created), entities=keys, schema=schema, udf=udf)
    slide = draw(st.sampled_from([None, 2, 5]))
    aggs = []
    for i in range(n_aggs):
        mult = draw(st.integers(1, 4))
        window = timedelta(seconds=mult * (slide or draw(st.sampled_from([1, 3, 7]))))
        aggs.append(
            Aggregation(
                column=draw(st.sampled_from(["price", "volume"])),
                function=draw(st.sampled_from(AGGREGATION_FUNCTIONS)),
                time_window=window,
                slide_interval=None if slide is None else timedelta(seconds=slide),
                name=f"a{i}",
            )
        )
    derive = add_double if draw(st.booleans()) else None
    schema = None
    if derive is not None:
        schema = [Field(name=a.name, dtype=a.output_dtype) for a in aggs] + [Field(name="d", dtype=Float64)]
    return StreamFeatureView(
        name="v", source=source(created), entities=keys, aggregations=aggs, udf=udf, derive=derive, schema=schema
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    view = draw(views())
    base = draw(st.sampled_from(BASES))
    n = draw(st.integers(0, 40))
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {
            "code": draw(st.sampled_from(CODES)),
            "market_id": draw(st.integers(1, 2)),
            TS: base + draw(st.integers(-12, 12)) * S + draw(st.sampled_from([0, 0, 1, 499_999])),
            "price": draw(prices),
            "volume": draw(volumes),
        }
        if view.batch_source.created_timestamp_column:
            row[CREATED] = base + draw(st.integers(0, 3)) * S
        rows.append(row)
    return Case(view, rows, draw(st.booleans()), draw(st.integers(0, 2**32)))


def events_table(case: Case) -> pa.Table:
    """The rows as the batch source holds them; with offsets, in shuffled order."""
    order = list(range(len(case.rows)))
    if case.offsets:
        random.Random(case.seed).shuffle(order)
    columns: dict[str, pa.Array] = {
        "code": pa.array([case.rows[i]["code"] for i in order], pa.string()),
        "market_id": pa.array([case.rows[i]["market_id"] for i in order], pa.int64()),
        TS: pa.array([case.rows[i][TS] for i in order], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "price": pa.array([case.rows[i]["price"] for i in order], pa.float64()),
        "volume": pa.array([case.rows[i]["volume"] for i in order], pa.int64()),
    }
    if case.view.batch_source.created_timestamp_column:
        # naive timestamps in ms: read as UTC, any unit
        columns[CREATED] = pa.array([case.rows[i][CREATED] // 1000 for i in order], pa.int64()).cast(pa.timestamp("ms"))
    if case.offsets:
        columns["_kafka_partition"] = pa.array([0] * len(order), pa.int32())
        columns["_kafka_offset"] = pa.array(order, pa.int64())
    return pa.table(columns)


def key_of(view: StreamFeatureView, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in view.join_keys)


def check(case: Case) -> None:
    view = case.view
    arrivals = [Arrival(0, i, {k: v for k, v in r.items() if k in _columns(view)}) for i, r in enumerate(case.rows)]
    want = expected(view, arrivals)
    assert not want.late
    got = compute(view, events_table(case), con=CON)  # one connection for all examples: also tests con=
    assert got.column_names == [*view.join_keys, TS, *view.feature_names]
    assert got.schema.field(TS).type == pa.timestamp("us", tz="UTC")
    for f in view.features:
        assert got.schema.field(f.name).type == f.dtype.arrow
    rows = got.to_pylist()
    have = {(key_of(view, r), _us(r[TS])): r for r in rows}
    assert len(have) == len(rows), "one row per output identity"
    assert sorted(have, key=repr) == sorted(want.rows, key=repr)
    for ident, values in want.rows.items():
        for name, value in values.items():
            assert close(have[ident][name], value), (ident, name, have[ident][name], value)


def _columns(view: StreamFeatureView) -> set[str]:
    return {*view.join_keys, TS, CREATED, "price", "volume"}


def _us(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * S + delta.microseconds


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_compute_equals_the_reference(case: Case) -> None:
    check(case)


# -- fixed cases: each rule once, by hand ---------------------------------------------------------


def _view(**kwargs: Any) -> StreamFeatureView:
    kwargs.setdefault("entities", [code])
    return StreamFeatureView(name="v", source=source(kwargs.pop("created", False)), **kwargs)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    table = pa.Table.from_pylist(rows)
    for name in (TS, CREATED):
        if name in table.column_names:
            stamps = table.column(name).cast(pa.int64()).cast(pa.timestamp("us", tz="UTC"))
            table = table.set_column(table.column_names.index(name), name, stamps)
    return table


def test_continuous_window_excludes_its_open_end() -> None:
    view = _view(aggregations=[Aggregation(column="price", function="sum", time_window=timedelta(seconds=10))])
    rows = [{"code": "CL", TS: t * S, "price": p} for t, p in [(0, 1.0), (10, 2.0), (20, 4.0), (29, 8.0)]]
    got = compute(view, _table(rows)).to_pydict()
    # (t - 10s, t]: the event 10 s earlier is out
    assert got["price_sum_10s"] == [1.0, 2.0, 4.0, 12.0]


def test_hopping_rows_sit_at_window_ends() -> None:
    agg = Aggregation(
        column="price", function="count", time_window=timedelta(seconds=10), slide_interval=timedelta(seconds=5)
    )
    got = compute(_view(aggregations=[agg]), _table([{"code": "CL", TS: 7 * S, "price": 1.0}])).to_pydict()
    assert [_us(t) // S for t in got[TS]] == [10, 15]
    assert got["price_count_10s"] == [1, 1]


def test_duplicates_keep_the_latest_created_then_the_latest_offset() -> None:
    view = _view(
        created=True, aggregations=[Aggregation(column="price", function="last", time_window=timedelta(seconds=1))]
    )
    rows = [
        {"code": "CL", TS: 0, CREATED: 2 * S, "price": 1.0, "_kafka_offset": 5},
        {"code": "CL", TS: 0, CREATED: 1 * S, "price": 2.0, "_kafka_offset": 9},
        {"code": "CL", TS: 0, CREATED: 2 * S, "price": 3.0, "_kafka_offset": 7},
    ]
    got = compute(view, _table(rows)).to_pydict()
    assert got["price_last_1s"] == [3.0]


def test_rows_with_null_keys_or_times_are_dropped() -> None:
    view = _view(aggregations=[Aggregation(column="price", function="count", time_window=timedelta(seconds=10))])
    rows = [
        {"code": None, TS: 0, "price": 1.0},
        {"code": "CL", TS: None, "price": 1.0},
        {"code": "CL", TS: S, "price": 1.0},
    ]
    assert compute(view, _table(rows)).to_pydict()["price_count_10s"] == [1]


def test_missing_columns_and_unreadable_types_are_one_line_errors() -> None:
    view = _view(aggregations=[Aggregation(column="price", function="sum", time_window=timedelta(seconds=10))])
    with pytest.raises(DataSourceError, match="no columns"):
        compute(view, pa.table({"code": ["CL"], "price": [1.0]}))
    with pytest.raises(DefinitionError, match="not a number"):
        compute(view, _table([{"code": "CL", TS: 0, "price": "x"}]))


def test_an_unbound_udf_says_how_to_bind_it() -> None:
    bound = _view(udf=scale_and_filter, schema=[Field(name="price", dtype=Float64)])
    unbound = StreamFeatureView.from_spec(bound.to_spec(), {"commodity": code})
    with pytest.raises(DefinitionError, match="not loaded"):
        compute(unbound, _table([{"code": "CL", TS: 0, "price": 1.0, "volume": 1}]))


def _record_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A udf that keeps what it was given, for the test below."""
    _seen.append(df.copy())
    return df


_seen: list[pd.DataFrame] = []


def test_the_udf_sees_event_columns_with_utc_microsecond_times() -> None:
    view = _view(created=True, udf=_record_frame, schema=[Field(name="price", dtype=Float64)])
    table = _table([{"code": "CL", TS: 5 * S, CREATED: 6 * S, "price": 1.0, "_kafka_offset": 3, "_kafka_partition": 0}])
    table = table.set_column(2, CREATED, table.column(CREATED).cast(pa.timestamp("ms")))  # naive ms: read as UTC
    _seen.clear()
    got = compute(view, table)
    frame = _seen[0]
    assert list(frame.columns) == ["code", TS, CREATED, "price"]
    assert str(frame[TS].dtype) == "datetime64[us, UTC]" and str(frame[CREATED].dtype) == "datetime64[us, UTC]"
    assert frame[CREATED].iloc[0] == pd.Timestamp(6, unit="s", tz="UTC")
    assert got.to_pydict()["price"] == [1.0]


def test_a_streamed_row_beats_a_loaded_one_of_the_same_identity() -> None:
    view = _view(aggregations=[Aggregation(column="price", function="last", time_window=timedelta(seconds=1))])
    rows = [
        {"code": "CL", TS: 0, "price": 1.0, "_kafka_offset": 4},
        {"code": "CL", TS: 0, "price": 2.0, "_kafka_offset": None},  # loaded from elsewhere, later in the input
    ]
    assert compute(view, _table(rows)).to_pydict()["price_last_1s"] == [1.0]


def drop_expensive(df: pd.DataFrame) -> pd.DataFrame:
    """A udf that drops events with a price above 100."""
    return df[~(df["price"] > 100)]


def drop_expensive_and_renumber(df: pd.DataFrame) -> pd.DataFrame:
    """The same filter, losing the index."""
    return drop_expensive(df).reset_index(drop=True)


def test_a_duplicate_the_udf_drops_does_not_replace_the_earlier_winner() -> None:
    """Rule 3 before rule 4: identity is settled among the udf's survivors only."""
    aggs = [Aggregation(column="price", function="last", time_window=timedelta(seconds=10))]
    rows = [
        {"code": "CL", TS: 0, CREATED: 1 * S, "price": 5.0, "_kafka_offset": 1},
        {"code": "CL", TS: 0, CREATED: 2 * S, "price": 500.0, "_kafka_offset": 2},  # newer, but dropped
        {"code": "CL", TS: S, CREATED: 1 * S, "price": 7.0, "_kafka_offset": 3},
        {"code": "CL", TS: S, CREATED: 1 * S, "price": 900.0, "_kafka_offset": 4},  # later offset, dropped
    ]
    got = compute(_view(created=True, aggregations=aggs, udf=drop_expensive), _table(rows)).to_pydict()
    assert [_us(t) for t in got[TS]] == [0, S]
    assert got["price_last_10s"] == [5.0, 7.0]
    plain = _view(created=True, udf=drop_expensive, schema=[Field(name="price", dtype=Float64)])
    assert compute(plain, _table(rows)).to_pydict()["price"] == [5.0, 7.0]
    # without the udf the later versions win
    assert compute(_view(created=True, aggregations=aggs), _table(rows)).to_pydict()["price_last_10s"] == [500.0, 900.0]


def test_an_event_the_udf_drops_does_not_count() -> None:
    """(The watermark it moved is the stream's business: the batch gets the accepted events, dropped ones too.)"""
    aggs = [Aggregation(column="price", function="count", time_window=timedelta(seconds=10))]
    rows = [
        {"code": "CL", TS: 0, "price": 1.0},
        {"code": "CL", TS: 2 * S, "price": 200.0},
        {"code": "CL", TS: 3 * S, "price": 1.0},
    ]
    got = compute(_view(aggregations=aggs, udf=drop_expensive), _table(rows)).to_pydict()
    assert [_us(t) for t in got[TS]] == [0, 3 * S]
    assert got["price_count_10s"] == [1, 2]


def test_a_udf_that_renumbers_and_keeps_some_of_one_identity_is_refused() -> None:
    aggs = [Aggregation(column="price", function="sum", time_window=timedelta(seconds=10))]
    whole = [
        {"code": "CL", TS: 0, "price": 1.0},
        {"code": "CL", TS: 0, "price": 2.0},
        {"code": "CL", TS: S, "price": 500.0},
    ]
    got = compute(_view(aggregations=aggs, udf=drop_expensive_and_renumber), _table(whole)).to_pydict()
    assert got["price_sum_10s"] == [2.0]  # both events at 0 kept, matched in order: the last wins
    split = [{"code": "CL", TS: 0, "price": 500.0}, {"code": "CL", TS: 0, "price": 2.0}]
    with pytest.raises(DefinitionError, match="kept only some of several events"):
        compute(_view(aggregations=aggs, udf=drop_expensive_and_renumber), _table(split))
