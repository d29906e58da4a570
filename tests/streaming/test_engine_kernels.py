"""The engine's vectorized kernels against plain per-item Python, on random inputs.

The shortcuts of the turn's fast paths (docs/streaming.md, "sixth pass") each answer a common case
without the general loop: ``runs.search`` answers a query at either end of its range by two
comparisons, ``Runs.insert`` appends one entry per slot in place, ``Windows`` reads short ranges
value by value, ``SourceEngine`` decides lateness for a whole batch at once when its times span less
than the delay. Each is checked here against a direct per-item computation, with inputs drawn so
that both the shortcut and the general path are taken.
"""

from __future__ import annotations

import bisect
import math
from datetime import timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ladle.aggregation.blocks import BLOCK, Summaries
from ladle.aggregation.incremental import SourceEngine
from ladle.aggregation.runs import Runs, search
from ladle.aggregation.windows import Windows
from ladle.definitions import Aggregation

from .engine_cases import source, view
from .reference import _apply

SEEDS = st.integers(0, 2**32 - 1)


@settings(max_examples=150, deadline=None)
@given(SEEDS, st.booleans())
def test_search_is_a_bisection_of_each_range(seed: int, right: bool) -> None:
    rng = np.random.default_rng(seed)
    runs = [np.sort(rng.choice(1000, int(rng.integers(0, 40)), replace=False)) for _ in range(int(rng.integers(1, 12)))]
    keys = np.concatenate([np.array([-5], np.int64), *[r.astype(np.int64) for r in runs], np.array([2000], np.int64)])
    bounds = np.cumsum([1, *[len(r) for r in runs]])
    lo, hi, x = [], [], []
    for i, run in enumerate(runs):
        for _ in range(5):  # below, inside, at an entry, above the run
            choice = rng.integers(0, 4)
            value = int(run[rng.integers(0, len(run))]) if len(run) and choice == 2 else int(rng.integers(-10, 1010))
            value = -20 if choice == 0 else 1500 if choice == 3 else value
            lo.append(bounds[i])
            hi.append(bounds[i + 1])
            x.append(value)
    got = search(keys, np.array(lo, np.int64), np.array(hi, np.int64), np.array(x, np.int64), right=right)
    find = bisect.bisect_right if right else bisect.bisect_left
    want = [find(keys.tolist(), v, a, b) for a, b, v in zip(lo, hi, x, strict=True)]
    assert got.tolist() == want


@settings(max_examples=100, deadline=None)
@given(SEEDS)
def test_one_entry_per_slot_inserts_like_a_sorted_dict(seed: int) -> None:
    rng = np.random.default_rng(seed)
    runs = Runs({"v": (np.dtype(np.float64), np.nan)}, ["v"])
    slots = int(rng.integers(1, 30))
    runs.add_slots(slots)
    model: dict[int, dict[int, float]] = {s: {} for s in range(slots)}
    for _ in range(int(rng.integers(1, 25))):
        chosen = np.sort(rng.choice(slots, int(rng.integers(1, slots + 1)), replace=False)).astype(np.int64)
        t = np.empty(len(chosen), np.int64)
        for i, s in enumerate(chosen.tolist()):  # mostly newer than the slot's newest, sometimes older
            newest = max(model[s], default=0)
            older = model[s] and rng.random() < 0.2
            candidate = int(rng.integers(0, newest)) if older and newest > 0 else newest + int(rng.integers(1, 5))
            while candidate in model[s]:
                candidate += 1
            t[i] = candidate
        v = rng.normal(size=len(chosen))
        runs.insert(chosen, t, {"v": v})
        for s, ti, vi in zip(chosen.tolist(), t.tolist(), v.tolist(), strict=True):
            model[s][ti] = vi
    for s in range(slots):
        pos = np.arange(runs.lo[s], runs.hi[s])
        assert runs.t[pos].tolist() == sorted(model[s])
        assert runs.cols["v"][pos].tolist() == [model[s][ti] for ti in sorted(model[s])]


def _naive(function: str, x: list[float]) -> float:
    """The stream reference's aggregate of the present values; NaN for missing ones and no answer."""
    got = _apply(function, [v for v in x if not math.isnan(v)])
    return math.nan if got is None else float(got)


@settings(max_examples=100, deadline=None)
@given(SEEDS, st.sampled_from([0.0, 0.3]), st.sampled_from([8, 3 * BLOCK, 6 * BLOCK]), st.booleans())
def test_windows_aggregate_each_range_as_its_values(seed: int, missing: float, longest: int, empty: bool) -> None:
    """Short ranges only (read value by value) and long ones (block summaries), with or without empty ranges."""
    rng = np.random.default_rng(seed)
    size = 8 * BLOCK
    values = np.round(rng.uniform(-1000, 1000, size), 2)
    values[rng.random(size) < missing] = np.nan
    a = rng.integers(0, size - longest, 40)
    b = a + rng.integers(0 if empty else 1, longest + 1, 40)
    summaries = Summaries(["v"])
    summaries.resize(size)
    windows = Windows(values, lambda blocks: summaries.read({"v": values}, "v", blocks), a, b)
    for function in ("count", "sum", "mean", "min", "max", "first", "last", "stddev"):
        got = np.asarray(windows.aggregate(function), np.float64)
        want = np.array([_naive(function, values[i:j].tolist()) for i, j in zip(a, b, strict=True)])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=function)


@settings(max_examples=100, deadline=None)
@given(SEEDS, st.sampled_from([0, 5, 1_000]), st.booleans())
def test_batch_lateness_matches_the_partition_by_partition_rule(seed: int, delay: int, interleaved: bool) -> None:
    """Rule 2 over a whole batch at once (slices of partitions; the span shortcut) against each
    partition's events checked one by one against its running newest time."""
    rng = np.random.default_rng(seed)
    src = source(delay_us=delay)
    engine = SourceEngine(src, [view(src, [Aggregation(column="x", function="sum", time_window=timedelta(seconds=1))])])
    newest: dict[int, int] = {}
    for _ in range(int(rng.integers(1, 6))):
        n = int(rng.integers(1, 30))
        parts = rng.integers(0, 3, n)
        if not interleaved:
            parts = np.sort(parts)
        t = 10_000 + np.cumsum(rng.integers(-3, 4, n)) * int(rng.choice([1, 100]))
        p = parts.astype(np.int64)
        where = [(int(q), np.flatnonzero(p == q)) for q in np.unique(p)]
        runs: list[tuple[int, slice | np.ndarray]] = list(where)
        if not interleaved:
            runs = [(q, slice(int(w[0]), int(w[-1]) + 1)) for q, w in where]
        late = engine._late_runs(runs, t.astype(np.int64))
        want = []
        for q, ti in zip(p.tolist(), t.tolist(), strict=True):
            prior = newest.get(q)
            want.append(prior is not None and ti < prior - delay)
            newest[q] = ti if prior is None else max(prior, ti)
        assert late.tolist() == want
        assert engine.watermarks == {q: w - delay for q, w in newest.items()}
