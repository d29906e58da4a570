"""``SourceEngine`` (one engine call per loop turn for every partition) against one ``PartitionEngine``
per partition, on random event sequences over three partitions.

``PartitionEngine`` is held to the reference semantics by test_engine_property.py; here the same
events, cut into the same micro-batches, go once through one ``SourceEngine`` (the partitions'
events of a turn interleaved at random, each partition's in offset order) and once through a
``PartitionEngine`` per partition. Keys repeat across partitions, so a state shared by mistake
would show. Each turn must accept and reject the same offsets, reach the same watermarks and write
the same rows (every function, continuous and hopping windows, udfs, duplicates, late events); a
random partition is revoked and restored from its accepted events midway, as ``ladle stream``
does on a rebalance.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from ladle.aggregation import incremental, runs
from ladle.aggregation.incremental import PartitionEngine, SourceEngine, Step
from ladle.definitions import Aggregation
from ladle.definitions.stream_feature_view import AGGREGATION_FUNCTIONS

from .engine_cases import source, table, view
from .reference import Arrival, close

PARTITIONS = (0, 1, 2)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    created = draw(st.booleans())
    src = source(delay_us=draw(st.sampled_from([0, 3, 20])), created=created)
    udf = draw(st.sampled_from(["none", "scale_and_add", "keep_small", "renumber"]))
    kind = draw(st.sampled_from(["continuous", "hopping", "plain"]))
    slide = timedelta(microseconds=5) if kind == "hopping" else None
    spans = [5, 10, 25] if slide else [1, 4, 10, 30]
    aggs = []
    if kind != "plain":
        for i, function in enumerate(AGGREGATION_FUNCTIONS):
            window = timedelta(microseconds=draw(st.sampled_from(spans)))
            aggs.append(Aggregation(draw(st.sampled_from(["x", "y"])), function, window, slide, name=f"a{i}"))
    views = [view(src, aggs, composite=draw(st.booleans()), udf=udf, name="main")]
    if draw(st.booleans()):
        views.append(view(src, (), composite=True, name="side"))
    streams: dict[int, list[Arrival]] = {}
    for p in PARTITIONS:
        t = draw(st.sampled_from([1_000, 1_003]))
        arrivals: list[Arrival] = []
        for offset in range(draw(st.integers(0, 25))):
            if arrivals and draw(st.integers(0, 5)) == 0:  # a duplicate of an earlier identity
                row = dict(draw(st.sampled_from(arrivals)).row)
            else:
                t += draw(st.integers(-4, 9))
                row = {"k": draw(st.sampled_from("ab")), "n": draw(st.integers(1, 2)),
                       "ts": t - draw(st.sampled_from([0, 0, 1, 6, 40]))}  # fmt: skip
            row.update(x=draw(st.none() | st.integers(1, 999).map(float)), y=draw(st.integers(1, 99).map(float)),
                       tag=draw(st.sampled_from([None, "p"])))  # fmt: skip
            if created:
                row["c"] = draw(st.integers(0, 3))
            arrivals.append(Arrival(p, 100 * p + offset, row))
        streams[p] = arrivals
    turns = draw(st.integers(1, 6))
    cuts = {p: sorted(draw(st.lists(st.integers(0, len(a)), min_size=turns - 1, max_size=turns - 1)))
            for p, a in streams.items()}  # fmt: skip
    revoke = draw(st.none() | st.tuples(st.integers(0, turns - 1), st.sampled_from(PARTITIONS)))
    return {"src": src, "views": views, "streams": streams, "cuts": cuts, "turns": turns, "revoke": revoke,
            "created": created, "seed": draw(st.integers(0, 1000))}  # fmt: skip


def rows_of(steps: list[Step], name: str) -> list[dict[str, Any]]:
    """Every row written for a view over some steps, in a canonical order."""
    out = [r for s in steps if name in s.rows for r in s.rows[name].to_pylist()]
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in sorted(r)))


def same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    keyed = lambda r: tuple(str(r[k]) for k in ("k", "n", "ts") if k in r)  # noqa: E731
    for g, w in zip(sorted(got, key=keyed), sorted(want, key=keyed), strict=True):
        assert g.keys() == w.keys()
        bad = {f: (g[f], w[f]) for f in g if not (g[f] == w[f] or close(g[f], w[f]))}
        assert not bad, (g, w, bad)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_one_call_for_all_partitions_equals_one_engine_per_partition(case: dict[str, Any]) -> None:
    src, views, streams, created = case["src"], case["views"], case["streams"], case["created"]
    note(f"views {[(v.name, v.join_keys, [a.to_spec() for a in v.aggregations]) for v in views]}")
    note(f"streams {streams} cuts {case['cuts']} revoke {case['revoke']}")
    rng = np.random.default_rng(case["seed"])
    with (
        mock.patch.object(runs, "_FIRST_SIZE", 4),
        mock.patch.object(runs, "_COMPACT_FLOOR", 0),
        mock.patch.object(incremental, "_EVICT_EVERY", 0),
    ):
        shared = SourceEngine(src, views)
        single = {p: PartitionEngine(src, views, p) for p in PARTITIONS}
        accepted: dict[int, list[pa.Table]] = {p: [] for p in PARTITIONS}
        for turn in range(case["turns"]):
            chunks = {}
            for p, arrivals in streams.items():
                bounds = [0, *case["cuts"][p], len(arrivals)]
                chunks[p] = arrivals[bounds[turn] : bounds[turn + 1]]
            queues = {p: list(chunks[p]) for p in PARTITIONS}
            interleaved: list[Arrival] = []  # a random merge: each partition's own order kept
            while any(queues.values()):
                p = int(rng.choice([q for q in PARTITIONS if queues[q]]))
                interleaved.append(queues[p].pop(0))
            expected = [single[p].process(table(chunks[p], created)) for p in PARTITIONS if chunks[p]]
            if not interleaved:
                continue
            got = shared.process(table(interleaved, created))
            for p in PARTITIONS:
                mine = got.accepted.filter(pc.equal(got.accepted.column("_kafka_partition"), p))
                theirs = [s.accepted for s in expected if s.accepted.num_rows and
                          s.accepted.column("_kafka_partition")[0].as_py() == p]  # fmt: skip
                assert mine.column("_kafka_offset").to_pylist() == [
                    o for t in theirs for o in t.column("_kafka_offset").to_pylist()
                ]
                accepted[p].append(mine)
                late = got.late.filter(pc.equal(got.late.column("_kafka_partition"), p))
                assert late.column("_kafka_offset").to_pylist() == [
                    o for s in expected for o in s.late.column("_kafka_offset").to_pylist() if o // 100 == p
                ]
                assert shared.watermark_us(p) == single[p].watermark_us
            for v in views:
                same_rows(rows_of([got], v.name), rows_of(expected, v.name))
            if case["revoke"] is not None and case["revoke"][0] == turn:  # revoked, then assigned back
                p = case["revoke"][1]
                history = pa.concat_tables(accepted[p]) if accepted[p] else table([], created)
                shared.drop(p)
                shared.restore(p, history)
                single[p] = PartitionEngine(src, views, p)
                single[p].restore(history)
                assert shared.watermark_us(p) == single[p].watermark_us
        retained = shared.retained_by_partition()
        assert sum(retained.values()) == shared.retained
