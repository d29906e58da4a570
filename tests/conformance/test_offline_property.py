"""Offline store conformance, property tests: random data against the brute-force reference.

Hypothesis draws sources and requests that make the hard cases common: one to three string join
keys, rows over a pool of one to three key values (sometimes one with a NULL part), event times
on a coarse grid (many equal event times), created times on a coarser one with NULLs (many ties
on both), or no created column at all, a nullable feature, sources without rows; entity rows for
every key of the source and one without rows, at times before, on, a microsecond either side of,
between and after the rows; ttls of 0 (none) and of exactly the grid's gaps; timestamp columns in
several units and zones. Every feature value differs (NULLs aside), so any wrong row shows.

The expected answer is ``offline_reference`` scanning every source row for every entity row (or
every key of the window), not a join. When rows are tied on both event and created time the rules
let a store return any of them, so a store's value is accepted if it is the value of one of the
tied rows.

Each example builds its own store (``offline`` is called once per example and released at its end),
so the example counts are kept moderate: a server store spends about 0.1-0.5 s on one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladle import Entity, ValueType
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP

from .offline_backends import OfflineBuilder, SourceTable, release
from .offline_reference import Fact, latest_candidates, pit_candidates
from .offline_support import TS, US, at, make_view, pit, select, stamps

HISTORICAL_EXAMPLES = 40
PULL_EXAMPLES = 25

KEYS = ["k0", "k1", "k2"]
KEY_ENTITIES = [Entity(name=f"part{i}", join_keys=[k], value_type=ValueType.STRING) for i, k in enumerate(KEYS)]
#: Source timestamp types (source times are whole minutes), and entity ones (they need microseconds).
TIME_TYPES = [TS, pa.timestamp("ns"), pa.timestamp("ms", tz="America/New_York"), pa.timestamp("s", tz="Asia/Kolkata")]
QUERY_TIME_TYPES = [TS, pa.timestamp("ns"), pa.timestamp("us", tz="America/New_York"), pa.timestamp("ns", tz="+05:45")]

event_minute = st.sampled_from([0, 10, 20])
created_minute = st.sampled_from([None, 0, 1])
is_null = st.integers(0, 4).map(lambda v: v == 0)  # a NULL feature now and then
#: Entity and window times: before, on, between and after the event times, and a microsecond
#: either side of each.
query_minute = st.builds(
    lambda m, nudge: m + nudge, st.sampled_from([0, 5, 10, 15, 20, 30, -5]), st.sampled_from([0.0, 0.0, 0.0, -US, US])
)
ttl_minutes = st.sampled_from([0, 5, 10, 20])


@dataclass(frozen=True)
class Row:
    """A source row as drawn: key values, event and created minutes, the feature value."""

    keys: tuple[str | None, ...]
    event: float
    created: float | None
    value: float | None

    def fact(self, with_created: bool) -> Fact:
        return Fact(self.keys, at(self.event), at(self.created) if with_created and self.created is not None else None)


@dataclass(frozen=True)
class Case:
    """A source and what to ask of it."""

    width: int
    pool: list[tuple[str | None, ...]]  # the key values rows are drawn from
    with_created: bool
    rows: list[Row]
    event_type: pa.DataType
    created_type: pa.DataType

    def source(self) -> SourceTable:
        columns: dict[str, pa.Array] = {
            k: pa.array([r.keys[i] for r in self.rows], pa.string()) for i, k in enumerate(KEYS[: self.width])
        }
        columns["event_ts"] = stamps([r.event for r in self.rows], self.event_type)
        if self.with_created:
            columns["created"] = stamps([r.created for r in self.rows], self.created_type)
        columns["x"] = pa.array([r.value for r in self.rows], pa.float64())
        return SourceTable(pa.table(columns), "event_ts", "created" if self.with_created else "")

    def facts(self) -> list[Fact]:
        return [r.fact(self.with_created) for r in self.rows]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A source over a pool of one to three key values (so rows of one key are common)."""
    width = draw(st.integers(1, 3))
    pool = draw(st.lists(st.tuples(*[st.sampled_from(["a", "b"])] * width), min_size=1, max_size=3, unique=True))
    with_null = st.tuples(*[st.sampled_from(["a", None])] * width).filter(lambda k: None in k)
    pool += draw(st.lists(with_null, max_size=1))  # a key with a NULL part, sometimes
    size = draw(st.integers(0, 16))  # drawn first: lists alone are mostly very short
    drawn = draw(
        st.lists(st.tuples(st.sampled_from(pool), event_minute, created_minute, is_null), min_size=size, max_size=size)
    )
    # Every value differs (a NULL aside), so a wrong row is seen whenever it is not tied with the right one.
    rows = [Row(k, e, c, None if null else float(i)) for i, (k, e, c, null) in enumerate(drawn)]
    times = st.sampled_from(TIME_TYPES)
    with_created = draw(st.integers(0, 3)) > 0  # mostly: most tie-break cases need it
    return Case(width, pool, with_created, rows, draw(times), draw(times))


@st.composite
def entity_frames(draw: st.DrawFn, case: Case) -> list[tuple[tuple[str | None, ...], float]]:
    """Every key of the source and a key without rows at each of a few times, plus a few random rows."""
    times = draw(st.lists(query_minute, min_size=1, max_size=5))
    grid = [(k, t) for t in times for k in [*case.pool, ("z",) * case.width]]
    any_key = st.tuples(*[st.sampled_from(["a", "b", "z", None])] * case.width)
    extra = draw(st.lists(st.tuples(any_key, query_minute), max_size=4))
    return draw(st.permutations(grid + extra))


#: ``offline`` is function-scoped on purpose: each example calls it for a store of its own.
PROPERTY = settings(
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(PROPERTY, max_examples=HISTORICAL_EXAMPLES)
@given(
    data=st.data(),
    case=cases(),
    ttls=st.lists(ttl_minutes, min_size=1, max_size=2),
    full_feature_names=st.booleans(),
    ts_type=st.sampled_from(QUERY_TIME_TYPES),
)
def test_historical_matches_brute_force(
    offline: OfflineBuilder,
    data: st.DataObject,
    case: Case,
    ttls: list[int],
    full_feature_names: bool,
    ts_type: pa.DataType,
) -> None:
    queries = data.draw(entity_frames(case), label="entity rows")
    full_feature_names = full_feature_names or len(ttls) > 1  # two views of one source: names would collide
    keys = KEYS[: case.width]
    setup = offline({"src": case.source()})
    try:
        spans = [timedelta(minutes=t) for t in ttls]
        views = [
            make_view(setup.sources["src"], f"v{i}", entities=KEY_ENTITIES[: case.width], features=["x"], ttl=span)
            for i, span in enumerate(spans)
        ]
        entity = pa.table(
            {
                **{k: pa.array([q[0][i] for q in queries], pa.string()) for i, k in enumerate(keys)},
                "event_timestamp": stamps([q[1] for q in queries], ts_type),
            }
        )
        out = pit(setup.store, entity, [select(v) for v in views], full_feature_names)
        names = [f"{v.name}__x" if full_feature_names else "x" for v in views]
        assert out.column_names == [*entity.column_names, *names]
        assert out.select(keys).to_pylist() == entity.select(keys).to_pylist()
        assert out.column("event_timestamp").to_pylist() == [at(q[1]) for q in queries]
        for name, span in zip(names, spans, strict=True):
            winners = pit_candidates(case.facts(), [(q[0], at(q[1])) for q in queries], span)
            for i, (got, rows) in enumerate(zip(out.column(name).to_pylist(), winners, strict=True)):
                allowed = {case.rows[w].value for w in rows} if rows else {None}
                assert got in allowed, f"{name}, entity row {i} {queries[i]}: got {got}, expected one of {allowed}"
    finally:
        release(setup)


window = st.tuples(query_minute, query_minute).map(sorted)


@settings(PROPERTY, max_examples=PULL_EXAMPLES)
@given(case=cases(), windows=st.lists(window, min_size=1, max_size=3), batch_rows=st.integers(1, 8))
def test_pull_latest_and_pull_all_match_brute_force(
    offline: OfflineBuilder, case: Case, windows: list[list[float]], batch_rows: int
) -> None:
    setup = offline({"src": case.source()})
    try:
        view = make_view(setup.sources["src"], "src", entities=KEY_ENTITIES[: case.width], features=["x"])
        keys = KEYS[: case.width]
        facts = case.facts()

        def described(row: dict[str, Any]) -> tuple[Any, ...]:
            return (*(row[k] for k in keys), row["x"], row[EVENT_TIMESTAMP], row[CREATED_TIMESTAMP])

        def drawn(i: int) -> tuple[Any, ...]:
            return (*facts[i].keys, case.rows[i].value, facts[i].event, facts[i].created)

        for start, end in windows:
            batches = list(setup.store.pull_latest(view, at(start), at(end), batch_rows))
            assert all(b.num_rows <= batch_rows for b in batches)
            latest = [described(row) for b in batches for row in b.to_pylist()]
            expected = latest_candidates(facts, at(start), at(end))
            got_keys = Counter(row[: len(keys)] for row in latest)
            assert got_keys == Counter(expected.keys()), f"[{start}, {end}]: one row per key with rows in the window"
            for row in latest:
                allowed = {drawn(i) for i in expected[row[: len(keys)]]}
                assert row in allowed, f"[{start}, {end}]: got {row}, expected one of {allowed}"

            every = Counter(described(r) for b in setup.store.pull_all(view, at(start), at(end)) for r in b.to_pylist())
            assert every == Counter(drawn(i) for i, f in enumerate(facts) if at(start) <= f.event <= at(end))
    finally:
        release(setup)
