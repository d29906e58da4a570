"""The incremental engine against the reference semantics, on random event sequences.

Random keys (string, or string and int), times out of order, duplicates of an identity with and
without a created time, late events, missing values, all eight functions over continuous or hopping
windows, udfs that filter, change, add columns or lose the index, derive; split into random
micro-batches, with a crash at a random batch (committed or replayed). The stream writes a row at
exactly the (key, time) pairs the reference has (the udf runs before identity, so nothing is ever to
retract), the last row written at each must be the reference's, and the accepted/late split too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from ladle.aggregation import incremental, runs
from ladle.definitions import Aggregation
from ladle.definitions.stream_feature_view import AGGREGATION_FUNCTIONS

from .engine_cases import run, source, view, written
from .reference import Arrival, close, expected

UDFS = ["none", "scale_and_add", "keep_small", "renumber"]
VALUES = st.one_of(
    st.none(),
    st.sampled_from([0.01, 9999.99, 10000.0, 5000.0, 7000.01, 3.0]),
    st.integers(1, 1_000_000).map(lambda cents: cents / 100),
)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    created = draw(st.booleans())
    src = source(delay_us=draw(st.sampled_from([0, 3, 20])), created=created)
    udf = draw(st.sampled_from(UDFS))
    composite = draw(st.booleans())
    kind = draw(st.sampled_from(["continuous", "continuous", "hopping", "plain"]))
    slide = timedelta(microseconds=5) if kind == "hopping" else None
    spans = [5, 10, 25] if slide else [1, 4, 10, 30]
    columns = ["x", "y", *(["z"] if udf == "scale_and_add" else [])]
    aggs: list[Aggregation] = []
    derive = False
    if kind != "plain":
        for i, function in enumerate(AGGREGATION_FUNCTIONS):
            for _ in range(draw(st.integers(1, 2))):
                column = "tag" if function == "count" and draw(st.booleans()) else draw(st.sampled_from(columns))
                window = timedelta(microseconds=draw(st.sampled_from(spans)))
                aggs.append(Aggregation(column, function, window, slide, name=f"a{len(aggs)}_{i}"))
        derive = draw(st.booleans())
        if derive:
            longest = timedelta(microseconds=max(spans))
            aggs += [
                Aggregation("x", "max", longest, slide, "x_max_w"),
                Aggregation("x", "min", longest, slide, "x_min_w"),
            ]
    views = [view(src, aggs, composite=composite, udf=udf, derive=derive, name="main")]
    if draw(st.booleans()):  # a second view over the source, keyed differently, rows as they are
        views.append(view(src, (), composite=not composite, name="side"))
    arrivals: list[Arrival] = []
    t = draw(st.sampled_from([1_000, -37]))
    for offset in range(draw(st.integers(1, 60))):
        if arrivals and draw(st.integers(0, 5)) == 0:  # a duplicate of an earlier identity
            prev = draw(st.sampled_from(arrivals)).row
            k, n, at = prev["k"], prev["n"], prev["ts"]
        else:
            t += draw(st.integers(-4, 9))
            k, n = draw(st.sampled_from("abc")), draw(st.integers(1, 2))
            at = t - draw(st.sampled_from([0, 0, 0, 1, 6, 15, 40]))
        row = {
            "k": k,
            "n": n,
            "ts": at,
            "x": draw(VALUES),
            "y": draw(VALUES),
            "tag": draw(st.sampled_from([None, "p"])),
        }
        if created:
            row["c"] = draw(st.integers(0, 3))
        arrivals.append(Arrival(3, 100 + offset, row))
    cuts = draw(st.lists(st.integers(1, max(1, len(arrivals) - 1)), max_size=12))
    crash = draw(st.none() | st.tuples(st.integers(0, len(cuts)), st.booleans()))
    return {"src": src, "views": views, "arrivals": arrivals, "cuts": cuts, "crash": crash, "udf": udf}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_engine_matches_the_reference(case: dict[str, Any]) -> None:
    src, arrivals = case["src"], case["arrivals"]
    note(f"views {[(v.name, v.join_keys, [a.to_spec() for a in v.aggregations]) for v in case['views']]}")
    note(f"udf {case['udf']} created {src.created_timestamp_column!r} delay {src.watermark_delay_threshold}")
    note(f"arrivals {[(a.offset, a.row) for a in arrivals]}")
    note(f"cuts {case['cuts']} crash {case['crash']}")
    # tiny arrays that compact at once, eviction after every batch: every example also exercises
    # growth, compaction and eviction
    with (
        mock.patch.object(runs, "_FIRST_SIZE", 4),
        mock.patch.object(runs, "_COMPACT_FLOOR", 0),
        mock.patch.object(incremental, "_EVICT_EVERY", 0),
    ):
        steps, engine, _ = run(src, case["views"], arrivals, case["cuts"], case["crash"])
    for v in case["views"]:
        ref = expected(v, arrivals)
        final_watermark = ref.watermarks[3]
        assert engine.watermark_us == final_watermark
        accepted = [a.offset for a in ref.accepted]
        late = [a.offset for a in ref.late]
        replay = case["crash"] is not None and not case["crash"][1]
        got_accepted = [o for s in steps for o in s.accepted.column("_kafka_offset").to_pylist()]
        got_late = [o for s in steps for o in s.late.column("_kafka_offset").to_pylist()]
        if replay:  # the redelivered batch was split twice; each offset must land on the same side
            assert sorted(set(got_accepted)) == sorted(accepted) and sorted(set(got_late)) == sorted(late)
            assert not set(got_accepted) & set(got_late)
        else:
            assert got_accepted == accepted and got_late == late
        want = ref.rows
        if v.slide_interval is not None:
            assert final_watermark is not None
            want = {k: r for k, r in want.items() if k[1] < final_watermark}
        got, _ = written(steps, v)
        assert set(got) == set(want), set(got) ^ set(want)
        for ident, row in want.items():
            bad = {f: (got[ident][f], row[f]) for f in v.feature_names if not close(got[ident][f], row[f])}
            assert not bad, (ident, bad)
