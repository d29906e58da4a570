"""The incremental engine rule by rule (docs/streaming.md, "Semantics"), with numbers worked out by hand."""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ladle import Field, FileSource, Float64, JsonFormat, KafkaSource, StreamFeatureView
from ladle.aggregation.incremental import PartitionEngine
from ladle.definitions import Aggregation
from ladle.errors import DefinitionError, SchemaMismatchError

from .engine_cases import PARTITION, TS, commodity, run, source, table, view, written
from .reference import Arrival, close, expected

S = 1_000_000  # µs per second
H = 3600 * S
SEC = timedelta(seconds=1)
HOUR = timedelta(hours=1)


def events(*rows: dict[str, Any], first_offset: int = 0) -> pa.Table:
    """Events with offsets counting from ``first_offset``; every row gets k='a' unless it says otherwise."""
    created = any("c" in r for r in rows)
    return table([Arrival(PARTITION, first_offset + i, {"k": "a", **r}) for i, r in enumerate(rows)], created)


def values(engine_rows: pa.Table, column: str) -> list[Any]:
    return engine_rows.column(column).to_pylist()


def times(engine_rows: pa.Table) -> list[int]:
    return engine_rows.column("ts").cast(pa.int64()).to_pylist()


def test_watermark_and_late_events() -> None:
    """W = newest - d; t < W is late (and counts nowhere), t = W is on time."""
    src = source(delay_us=10 * S)
    v = view(src, [Aggregation("x", "count", HOUR, name="n")])
    engine = PartitionEngine(src, [v], PARTITION)
    assert engine.watermark_us is None
    step = engine.process(events({"ts": 100 * S, "x": 1.0}, {"ts": 95 * S, "x": 1.0}, {"ts": 89 * S, "x": 1.0}))
    assert step.watermark_us == engine.watermark_us == 90 * S
    assert step.late.column("_kafka_offset").to_pylist() == [2]
    assert step.accepted.column("_kafka_offset").to_pylist() == [0, 1]
    assert step.accepted.column_names == step.late.column_names == events({"ts": 0}).column_names
    step = engine.process(events({"ts": 90 * S, "x": 1.0}, {"ts": 110 * S, "x": 1.0}, {"ts": 99 * S}, first_offset=3))
    assert step.late.column("_kafka_offset").to_pylist() == [5]  # 99 s < 110 - 10 after the second event
    assert engine.watermark_us == 100 * S
    # counts over (t - 1 h, t]: the late events are nowhere
    assert dict(zip(times(step.rows["v"]), values(step.rows["v"], "n"), strict=True)) == {
        90 * S: 1,  # 90 only (95 and 100 are later)
        95 * S: 2,  # 90, 95: re-emitted because 90 arrived before it
        100 * S: 3,
        110 * S: 4,
    }


def test_duplicates_greatest_created_then_last_offset() -> None:
    src = source(created=True)
    v = view(src, [Aggregation("x", "sum", HOUR, name="total")])
    engine = PartitionEngine(src, [v], PARTITION)
    first = engine.process(events({"ts": 10 * S, "c": 5, "x": 1.0}, {"ts": 10 * S, "c": 5, "x": 2.0}))
    assert values(first.rows["v"], "total") == [2.0]  # same created: the later offset wins
    older = engine.process(events({"ts": 10 * S, "c": 4, "x": 100.0}, first_offset=2))
    assert "v" not in older.rows  # an older correction counts nowhere and writes nothing
    newer = engine.process(events({"ts": 10 * S, "c": 6, "x": 7.0}, {"ts": 11 * S, "c": 0, "x": 1.0}, first_offset=3))
    assert dict(zip(times(newer.rows["v"]), values(newer.rows["v"], "total"), strict=True)) == {
        10 * S: 7.0,
        11 * S: 8.0,
    }


def test_continuous_windows_by_hand() -> None:
    """Events at 1 h, 2 h, 3 h with x = 10, 20, 30 (and y missing at 2 h); windows (t - 2 h, t]."""
    src = source()
    fns = ["count", "sum", "mean", "min", "max", "stddev", "first", "last"]
    v = view(
        src, [Aggregation("x", f, 2 * HOUR, name=f) for f in fns] + [Aggregation("y", "count", 2 * HOUR, name="ny")]
    )
    engine = PartitionEngine(src, [v], PARTITION)
    step = engine.process(
        events({"ts": 1 * H, "x": 10.0, "y": 1.0}, {"ts": 2 * H, "x": 20.0}, {"ts": 3 * H, "x": 30.0, "y": 3.0})
    )
    rows = step.rows["v"]
    assert rows.schema.field("ts").type == TS
    assert rows.schema.field("count").type == pa.int64() and rows.schema.field("mean").type == pa.float64()
    assert rows.column_names == ["k", "ts", *fns, "ny"]
    by_time = {r["ts"]: r for r in rows.append_column("t", rows.column("ts").cast(pa.int64())).to_pylist()}
    at = {r["t"]: r for r in by_time.values()}
    assert at[1 * H] | {"ts": None} == {
        "k": "a", "ts": None, "t": 1 * H, "count": 1, "sum": 10.0, "mean": 10.0, "min": 10.0, "max": 10.0,
        "stddev": None, "first": 10.0, "last": 10.0, "ny": 1,
    }  # fmt: skip
    three = at[3 * H]  # window (1 h, 3 h]: the 1 h event is out
    assert (three["count"], three["sum"], three["mean"], three["min"], three["max"]) == (2, 50.0, 25.0, 20.0, 30.0)
    assert three["stddev"] == pytest.approx(statistics.stdev([20.0, 30.0]))
    assert (three["first"], three["last"], three["ny"]) == (20.0, 30.0, 1)


def test_a_late_but_accepted_event_re_emits_the_later_rows_within_the_window() -> None:
    src = source(delay_us=10 * H)
    v = view(src, [Aggregation("x", "sum", 2 * HOUR, name="s2"), Aggregation("x", "sum", HOUR, name="s1")])
    engine = PartitionEngine(src, [v], PARTITION)
    engine.process(events({"ts": 5 * H, "x": 1.0}, {"ts": 6 * H, "x": 2.0}, {"ts": 8 * H, "x": 4.0}))
    step = engine.process(events({"ts": 4 * H + 30 * 60 * S, "x": 10.0}, first_offset=3))
    rows = step.rows["v"]
    # 4:30 changes the rows at 4:30, 5:00 and 6:00 (within 2 h after it), not 8:00
    assert times(rows) == [4 * H + 1800 * S, 5 * H, 6 * H]
    assert values(rows, "s2") == [10.0, 11.0, 13.0]
    assert values(rows, "s1") == [10.0, 11.0, 2.0]


def test_hopping_windows_are_written_once_the_watermark_passes_them() -> None:
    src = source(delay_us=0)
    slide = HOUR
    v = view(src, [Aggregation("x", "sum", 2 * HOUR, slide, name="s"), Aggregation("x", "count", HOUR, slide, "n")])
    engine = PartitionEngine(src, [v], PARTITION)
    first = engine.process(events({"ts": 1 * H + 10 * S, "x": 1.0}, {"ts": 2 * H, "x": 2.0}))
    # W = 2 h: only the end 2 h... is not passed (W > e needed); nothing is written yet
    assert "v" not in first.rows
    second = engine.process(events({"ts": 3 * H + 1, "x": 4.0}, first_offset=2))
    rows = second.rows["v"]  # W = 3 h + 1 µs: ends 2 h and 3 h are final
    assert times(rows) == [2 * H, 3 * H]
    assert values(rows, "s") == [3.0, 3.0]  # (0, 2 h] and (1 h, 3 h] both hold 1:00:10 and 2:00
    assert values(rows, "n") == [2, 0]  # (1 h, 2 h] holds both; (2 h, 3 h] neither
    later = engine.process(events({"ts": 9 * H, "x": 8.0}, first_offset=3))
    rows = later.rows["v"]
    # ends 4 h and 5 h still see the 3:00:00.000001 event ((e - 2 h, e]); 6 h..8 h see nothing: no rows
    assert times(rows) == [4 * H, 5 * H]
    assert values(rows, "s") == [4.0, 4.0] and values(rows, "n") == [1, 0]


def test_views_without_aggregations_write_the_winning_events() -> None:
    src = source(created=True)
    v = view(src, udf="keep_small")
    engine = PartitionEngine(src, [v], PARTITION)
    step = engine.process(
        events(
            {"ts": 1 * S, "c": 1, "x": 1.5, "tag": "p"},
            {"ts": 2 * S, "c": 1, "x": 9000.0},  # dropped by the udf
            {"ts": 1 * S, "c": 0, "x": 99.0},  # older created: loses
        )
    )
    rows = step.rows["v"]
    assert rows.column_names == ["k", "ts", "x", "tag"]
    assert rows.to_pylist()[0] | {"ts": None} == {"k": "a", "ts": None, "x": 1.5, "tag": "p"}
    assert rows.num_rows == 1


def test_udf_and_derive() -> None:
    """scale_and_add doubles x and adds z = x - y; spread = x_max_w - x_min_w."""
    src = source()
    aggs = [
        Aggregation("x", "max", HOUR, name="x_max_w"),
        Aggregation("x", "min", HOUR, name="x_min_w"),
        Aggregation("z", "sum", HOUR, name="z_sum"),
    ]
    v = view(src, aggs, udf="scale_and_add", derive=True)
    engine = PartitionEngine(src, [v], PARTITION)
    step = engine.process(events({"ts": 1 * S, "x": 1.0, "y": 0.5}, {"ts": 2 * S, "x": 4.0, "y": 1.0}))
    rows = step.rows["v"]
    assert values(rows, "x_max_w") == [2.0, 8.0]
    assert values(rows, "spread") == [0.0, 6.0]
    assert values(rows, "z_sum") == [0.5, 3.5]


def test_restore_keeps_the_watermark_and_the_windows() -> None:
    src = source(delay_us=5 * S)
    v = view(src, [Aggregation("x", "sum", HOUR, name="s")])
    hop = view(src, [Aggregation("x", "sum", 10 * SEC, 10 * SEC, name="h")], name="hop")
    engine = PartitionEngine(src, [v, hop], PARTITION)
    before = engine.process(events({"ts": 3 * S, "x": 1.0}, {"ts": 25 * S, "x": 2.0}))
    assert times(before.rows["hop"]) == [10 * S]  # W = 20 s: end 10 passed; end 20 not yet (W > e)
    restarted = PartitionEngine(src, [v, hop], PARTITION)
    restarted.restore(before.accepted.take(pa.array([1, 0])))
    assert restarted.watermark_us == 20 * S
    assert restarted.retained == 2
    step = restarted.process(events({"ts": 19 * S, "x": 100.0}, {"ts": 21 * S, "x": 4.0}, first_offset=2))
    assert step.late.column("_kafka_offset").to_pylist() == [2]
    assert values(step.rows["v"], "s") == [5.0, 7.0]
    # W is still 20 s: the end 20 s is not written; the end 10 s is not written again
    assert "hop" not in step.rows
    step = restarted.process(events({"ts": 40 * S, "x": 1.0}, first_offset=4))
    # W = 35 s: ends 20 s and 30 s are due; (10 s, 20 s] holds no event (19 s was late), so no row there
    assert times(step.rows["hop"]) == [30 * S]
    assert values(step.rows["hop"], "h") == [6.0]


def test_state_is_bounded_by_the_longest_window() -> None:
    """One event a second per key over 500 keys for 10 minutes, windows up to 60 s: about 62 s of events stay."""
    src = source(delay_us=2 * S)
    v = view(src, [Aggregation("x", "mean", 60 * SEC, name="m"), Aggregation("x", "max", 10 * SEC, name="mx")])
    engine = PartitionEngine(src, [v], PARTITION)
    keys = np.array([f"k{i}" for i in range(500)], dtype=object)
    n = 2500
    for second in range(0, 600, 5):
        t = (second * S + np.arange(n) * 2000).astype(np.int64)
        batch = pa.table(
            {
                "k": pa.array(keys[np.arange(n) % 500]),
                "n": pa.array(np.zeros(n, np.int64)),
                "ts": pa.array(t).cast(TS),
                "x": pa.array(np.ones(n)),
                "y": pa.nulls(n, pa.float64()),
                "tag": pa.nulls(n, pa.string()),
                "_kafka_partition": pa.array(np.full(n, PARTITION, np.int32)),
                "_kafka_offset": pa.array(np.arange(second * 500, second * 500 + n)),
            }
        )
        engine.process(batch)
    # W - 60 s < t <= newest = W + 2 s: 62 s of events, 31,000; eviction runs once a quarter of the
    # state arrived anew, so at most about 1.25 x that
    assert 30_000 <= engine.retained <= 40_000
    assert engine.state_bytes >= 8 * 2 * engine.retained  # at least a timestamp and a value per held event


def test_precision_small_windows_after_a_long_history_of_large_values() -> None:
    """Prices 0.01..10000 with 2 decimals: a tiny variance after large values is exact to 1e-9."""
    src = source()
    v = view(src, [Aggregation("x", "stddev", 10 * SEC, name="sd"), Aggregation("x", "sum", 10 * SEC, name="s")])
    engine = PartitionEngine(src, [v], PARTITION)
    prices = [10000.0 - (i % 3) * 0.01 for i in range(2000)] + [0.01, 0.02, 0.01, 0.03, 0.02, 0.01] * 2
    rows = [{"ts": i * S, "x": p} for i, p in enumerate(prices)]
    written_rows = []
    for i in range(0, len(rows), 250):
        written_rows.append(engine.process(events(*rows[i : i + 250], first_offset=i)).rows["v"])
    out = pa.concat_tables(written_rows)
    sd, s = values(out, "sd"), values(out, "s")
    assert len(sd) == len(prices)
    for at in (1000, len(prices) - 1):  # around 10000 with a variance of 7e-5; then only cents
        window = prices[at - 9 : at + 1]
        assert s[at] == pytest.approx(sum(window), rel=1e-12)
        assert sd[at] == pytest.approx(statistics.stdev(window), rel=1e-9)


def test_views_must_read_the_source_and_events_need_their_columns() -> None:
    src = source()
    other = KafkaSource(
        name="other",
        kafka_bootstrap_servers="127.0.0.1:9",
        topic="other",
        timestamp_field="ts",
        message_format=JsonFormat(),
        batch_source=FileSource(path="unused/", timestamp_field="ts"),
    )
    with pytest.raises(DefinitionError, match="does not read it"):
        PartitionEngine(other, [view(src, [Aggregation("x", "sum", HOUR)])], PARTITION)
    engine = PartitionEngine(src, [view(src, [Aggregation("x", "sum", HOUR)])], PARTITION)
    with pytest.raises(SchemaMismatchError, match="_kafka_offset"):
        engine.process(events({"ts": 1}).drop_columns(["_kafka_offset"]))
    assert engine.watermark_us is None


@pytest.mark.parametrize(
    ("seed", "shape"), [(1, "out of order"), (2, "out of order"), (3, "corrections"), (4, "hopping")]
)
def test_long_windows_read_through_block_summaries_match_the_reference(seed: int, shape: str) -> None:
    """Hundreds of events per key, so windows span whole 64-entry blocks: with events out of order
    (runs rewritten), or in order with corrections of events up to 150 µs old (entries overwritten),
    or out of order into hopping windows."""
    rng = np.random.default_rng(seed)
    src = source(delay_us=200, created=True)
    fns = ["count", "sum", "mean", "min", "max", "stddev", "first", "last"]
    spans, slide = ([10, 150, 400], timedelta(microseconds=10)) if shape == "hopping" else ([3, 150, 400], None)
    aggs = [Aggregation("x", f, timedelta(microseconds=w), slide, f"{f}_{w}") for f in fns for w in spans]
    v = view(src, aggs, udf="keep_small")
    arrivals: list[Arrival] = []
    t = 0
    for offset in range(900):
        x = None if rng.random() < 0.1 else round(float(rng.choice([0.01, 9999.99, rng.uniform(0, 10000)])), 2)
        if shape == "corrections" and arrivals and rng.random() < 0.15:
            old = arrivals[-int(rng.integers(1, min(len(arrivals), 300) + 1))].row
            row = {**old, "c": old["c"] + 1, "x": x}
        else:
            t += int(rng.integers(1, 3)) if shape == "corrections" else int(rng.integers(0, 3))
            at = t - int(rng.integers(0, 150)) if shape != "corrections" and rng.random() < 0.15 else t
            row = {"k": str(rng.choice(["a", "b"])), "ts": at, "c": int(rng.integers(0, 2)), "x": x}
        arrivals.append(Arrival(PARTITION, offset, row))
    cuts = sorted(rng.choice(np.arange(1, 900), 40, replace=False).tolist())
    steps, _, _ = run(src, [v], arrivals, cuts)
    got, _ = written(steps, v)
    ref = expected(v, arrivals)
    want_rows = ref.rows
    if slide is not None:  # ends the watermark passed
        final = ref.watermarks[PARTITION]
        assert final is not None
        want_rows = {ident: r for ident, r in ref.rows.items() if ident[1] < final}
    assert set(got) == set(want_rows), set(got) ^ set(want_rows)
    for ident, want in want_rows.items():
        bad = {f: (got[ident][f], want[f]) for f in v.feature_names if not close(got[ident][f], want[f])}
        assert not bad, (ident, bad)


def rename_keys(events: pd.DataFrame) -> pd.DataFrame:
    """A broken udf: changes the join key."""
    return events.assign(k=events["k"] + "!")


def drop_a_row(rows: pd.DataFrame) -> pd.DataFrame:
    """A broken derive: loses a row."""
    return rows.iloc[1:]


def test_transforms_that_break_the_rules_are_refused_with_a_message() -> None:
    src = source()
    bad_udf = StreamFeatureView(
        name="bad_udf", source=src, entities=[commodity], aggregations=[Aggregation("x", "sum", HOUR)], udf=rename_keys
    )
    with pytest.raises(DefinitionError, match="bad_udf': udf returned rows that match no input event"):
        PartitionEngine(src, [bad_udf], PARTITION).process(events({"ts": 1, "x": 1.0}))
    bad_derive = StreamFeatureView(
        name="bad_derive",
        source=src,
        entities=[commodity],
        aggregations=[Aggregation("x", "sum", HOUR, name="s")],
        derive=drop_a_row,
        schema=[Field(name="s", dtype=Float64)],
    )
    with pytest.raises(DefinitionError, match="one row per input row"):
        PartitionEngine(src, [bad_derive], PARTITION).process(events({"ts": 1, "x": 1.0}))


def test_event_times_finer_than_a_microsecond_are_refused() -> None:
    src = source()
    engine = PartitionEngine(src, [view(src, [Aggregation("x", "sum", HOUR)])], PARTITION)
    batch = events({"ts": 1})
    batch = batch.set_column(2, "ts", pa.array([1501], pa.timestamp("ns", tz="UTC")))
    with pytest.raises(SchemaMismatchError, match="to the microsecond"):
        engine.process(batch)


def test_a_duplicate_the_udf_drops_does_not_replace_the_earlier_winner() -> None:
    """Rule 3 before rule 4: a correction the udf drops (x > 7000) never enters identity."""
    src = source(created=True)
    v = view(src, [Aggregation("x", "sum", HOUR, name="total"), Aggregation("x", "count", HOUR, name="n")])
    v = view(src, list(v.aggregations), udf="keep_small")
    engine = PartitionEngine(src, [v], PARTITION)
    first = engine.process(events({"ts": 10 * S, "c": 1, "x": 5.0}))
    assert values(first.rows["v"], "total") == [5.0]
    # a later created time would win, but the udf drops it: nothing is written, the winner stays
    dropped = engine.process(events({"ts": 10 * S, "c": 2, "x": 9000.0}, first_offset=1))
    assert "v" not in dropped.rows
    assert dropped.accepted.num_rows == 1  # accepted all the same (it goes to the offline log)
    # within one micro-batch too: the kept duplicate with the smaller created time wins
    both = engine.process(events({"ts": 20 * S, "c": 1, "x": 2.0}, {"ts": 20 * S, "c": 3, "x": 8000.0}, first_offset=2))
    assert times(both.rows["v"]) == [20 * S]
    assert values(both.rows["v"], "total") == [7.0] and values(both.rows["v"], "n") == [2]


def test_an_event_the_udf_drops_does_not_count_but_moves_the_watermark() -> None:
    src = source(delay_us=5 * S)
    kept, plain = (
        view(src, [Aggregation("x", "count", HOUR, name="n")], udf="keep_small"),
        view(src, [Aggregation("x", "count", HOUR, name="n")], name="all"),
    )
    engine = PartitionEngine(src, [kept, plain], PARTITION)
    step = engine.process(events({"ts": 100 * S, "x": 9000.0}))
    assert "v" not in step.rows and values(step.rows["all"], "n") == [1]  # another view without the udf counts it
    assert engine.watermark_us == 95 * S  # the dropped event is accepted: it moved the watermark
    step = engine.process(events({"ts": 94 * S, "x": 1.0}, {"ts": 96 * S, "x": 1.0}, first_offset=1))
    assert step.late.column("_kafka_offset").to_pylist() == [1]
    assert values(step.rows["v"], "n") == [1]  # at 96 s: the event at 100 s is later, and dropped anyway
    step = engine.process(events({"ts": 101 * S, "x": 1.0}, first_offset=3))
    assert values(step.rows["v"], "n") == [2]  # 96 and 101, not the dropped 100
    assert values(step.rows["all"], "n") == [3]


def test_views_with_different_udfs_settle_identity_apart() -> None:
    """Same join keys, different udfs: a duplicate one udf drops still replaces the winner for the other."""
    src = source(created=True)
    small = view(src, [Aggregation("x", "last", HOUR, name="x_last")], udf="keep_small", name="small")
    every = view(src, [Aggregation("x", "last", HOUR, name="x_last")], name="every")
    engine = PartitionEngine(src, [small, every], PARTITION)
    engine.process(events({"ts": 10 * S, "c": 1, "x": 5.0}))
    step = engine.process(events({"ts": 10 * S, "c": 2, "x": 9000.0}, first_offset=1))
    assert "small" not in step.rows
    assert values(step.rows["every"], "x_last") == [9000.0]


def test_a_udf_that_renumbers_and_keeps_some_of_one_identity_is_refused() -> None:
    """Without the index, which of two events at one (K, t) the udf kept is unknown."""
    src = source()
    v = view(src, [Aggregation("x", "sum", HOUR)], udf="renumber")
    engine = PartitionEngine(src, [v], PARTITION)
    # renumber drops events at times that are multiples of 3 µs, and keeps whole identities
    step = engine.process(events({"ts": 4, "x": 1.0}, {"ts": 4, "x": 2.0}, {"ts": 6, "x": 3.0}))
    assert times(step.rows["v"]) == [4]
    assert values(step.rows["v"], "x_sum_1h") == [2.0]
    partial = view(src, [Aggregation("x", "sum", HOUR)], udf="keep_then_renumber")
    with pytest.raises(DefinitionError, match="kept only some of several events"):
        PartitionEngine(src, [partial], PARTITION).process(events({"ts": 4, "x": 9000.0}, {"ts": 4, "x": 1.0}))


def test_columns_sharing_a_window_each_aggregate_their_own_values() -> None:
    """Two columns over the same windows share the windows' ranges (split once) but not their
    results: x and y are missing at different events, so their counts, sums and ends differ."""
    rng = np.random.default_rng(5)
    src = source()
    fns = ["count", "sum", "mean", "min", "max", "stddev", "first", "last"]
    aggs = [
        Aggregation(c, f, timedelta(microseconds=w), None, f"{c}_{f}_{w}")
        for w in (3, 150, 400)
        for f in fns
        for c in ("y", "x")
    ]
    v = view(src, aggs)
    arrivals: list[Arrival] = []
    for offset in range(700):
        x = None if rng.random() < 0.3 else round(float(rng.uniform(0, 100)), 2)
        y = None if rng.random() < 0.05 else round(float(rng.uniform(-50, 50)), 2)
        row = {"k": str(rng.choice(["a", "b"])), "ts": offset // 2, "x": x, "y": y}
        arrivals.append(Arrival(PARTITION, offset, row))
    cuts = sorted(rng.choice(np.arange(1, 700), 30, replace=False).tolist())
    steps, _, _ = run(src, [v], arrivals, cuts)
    got, _ = written(steps, v)
    ref = expected(v, arrivals)
    assert set(got) == set(ref.rows)
    for ident, want in ref.rows.items():
        bad = {f: (got[ident][f], want[f]) for f in v.feature_names if not close(got[ident][f], want[f])}
        assert not bad, (ident, bad)
