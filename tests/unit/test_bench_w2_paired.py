"""The paired W2 bench's own parts: the pair loop and its random order, the answer check, the
paired statistics and the shared block bootstrap, each against an independent computation (NumPy
on a known sample). No latency is asserted; the stores are not started here."""

from __future__ import annotations

import argparse
import itertools
import random
import time
from typing import Any

import numpy as np
import pytest
from bench.common import block_bootstrap_intervals, paired_blocks
from bench.w2_paired import (
    ARMS,
    SPOT_CHECK_EVERY,
    build_order,
    by_position,
    check_answers,
    default_build_first,
    interleave,
    pair_order,
    paired_stats,
    parse_workloads,
    time_calls,
)

from ladle.retrieval.response import OnlineResponse
from ladle.types import FieldStatus


def _runs(calls: dict[str, Any]) -> dict[str, Any]:
    """In-process run timers (as ``LocalArm.time_run`` makes them) of plain one-argument callables."""
    return {arm: (lambda arguments, _answer, call=call: time_calls(call, arguments)) for arm, call in calls.items()}


def test_time_calls_times_each_call_and_keeps_the_first_answer() -> None:
    nap = 0.01
    seen: list[int] = []

    def call(argument: int) -> int:
        seen.append(argument)
        if argument == 2:
            time.sleep(nap)
        return argument * 10

    times, first = time_calls(call, [1, 2, 3])
    assert seen == [1, 2, 3] and first == 10
    assert len(times) == 3 and all(isinstance(t, int) and t > 0 for t in times)
    assert times[1] >= nap * 1e9 > max(times[0], times[2])  # each call alone, the sleep in its own slot
    assert time_calls(call, []) == ([], None)


def test_interleave_asks_for_answers_only_on_spot_check_pairs() -> None:
    asked: list[tuple[str, int, bool]] = []

    def timer(arm: str) -> Any:
        def run(arguments: list[int], answer: bool) -> tuple[list[int], Any]:
            asked.append((arm, arguments[0], answer))
            return [1] * len(arguments), (arm if answer else None)

        return run

    counter = iter(range(10**6))
    checked: list[dict[str, Any]] = []
    interleave({a: timer(a) for a in ARMS}, lambda: next(counter), random.Random(2), 200,
               check=lambda _arg, answers: checked.append(answers), run=3, settle=1)  # fmt: skip
    spot_pairs = set(range(0, 200, SPOT_CHECK_EVERY))
    assert all(answer == ((first // 3) in spot_pairs) for _, first, answer in asked)
    assert checked == [{"single": "single", "cluster": "cluster"}] * len(spot_pairs)
    times, _ = interleave({a: timer(a) for a in ARMS}, lambda: 0, random.Random(2), 4)  # no check: never asked
    assert not any(answer for _, _, answer in asked[-8:]) and times["single"] == [1] * 4


def test_pair_order_is_a_fair_coin_and_reproducible() -> None:
    orders = [pair_order(random.Random(7)) for _ in range(3)]
    assert orders[0] == orders[1] == orders[2]  # the seed decides
    rng = random.Random(11)
    drawn = [pair_order(rng) for _ in range(4000)]
    assert all(sorted(o) == sorted(ARMS) for o in drawn)
    share = sum(o[0] == "cluster" for o in drawn) / len(drawn)
    assert 0.45 < share < 0.55  # 4000 fair coins: 6 standard deviations either side
    runs = sum(a != b for a, b in itertools.pairwise(drawn))
    assert 1800 < runs < 2200  # not alternating, not stuck: about half the neighbours differ


def test_interleave_calls_both_arms_with_one_draw_per_pair() -> None:
    log: list[tuple[str, int]] = []
    counter = iter(range(10**6))
    checked: list[tuple[int, dict[str, Any]]] = []

    def arm(name: str) -> Any:
        def call(argument: int) -> tuple[str, int]:
            log.append((name, argument))
            return name, argument

        return call

    calls = {a: arm(a) for a in ARMS}
    times, firsts = interleave(_runs(calls), lambda: next(counter), random.Random(3), 250,
                               check=lambda arg, answers: checked.append((arg, answers)))  # fmt: skip
    assert len(firsts) == 250 and all(len(times[a]) == 250 for a in ARMS)
    assert all(isinstance(t, int) and t > 0 for a in ARMS for t in times[a])
    for pair, first in enumerate(firsts):
        (name_1, arg_1), (name_2, arg_2) = log[2 * pair], log[2 * pair + 1]
        assert arg_1 == arg_2 == pair  # one draw, handed to both arms
        assert name_1 == first and {name_1, name_2} == set(ARMS)
    assert 0.35 < firsts.count("cluster") / 250 < 0.65
    assert [arg for arg, _ in checked] == list(range(0, 250, SPOT_CHECK_EVERY))
    assert checked[1][1] == {"single": ("single", SPOT_CHECK_EVERY), "cluster": ("cluster", SPOT_CHECK_EVERY)}


def test_interleave_in_runs_keeps_all_but_the_settling_calls() -> None:
    log: list[tuple[str, int]] = []
    counter = iter(range(10**6))
    checked: list[int] = []

    def arm(name: str) -> Any:
        def call(argument: int) -> int:
            log.append((name, argument))
            return argument

        return call

    calls = {a: arm(a) for a in ARMS}
    times, firsts = interleave(_runs(calls), lambda: next(counter), random.Random(5), 30,
                               check=lambda arg, answers: checked.append(arg), run=6, settle=2)  # fmt: skip
    assert len(log) == 30 * 2 * 6  # every call is made, settling ones too
    assert all(len(times[a]) == 30 * 4 for a in ARMS) and len(firsts) == 30 * 4
    for pair in range(30):
        calls_of_pair = log[12 * pair : 12 * pair + 12]
        first, second = calls_of_pair[:6], calls_of_pair[6:]
        assert {name for name, _ in first} == {firsts[4 * pair]} and len({name for name, _ in second}) == 1
        assert first[0][0] != second[0][0]
        assert [a for _, a in first] == [a for _, a in second] == list(range(6 * pair, 6 * pair + 6))
    assert checked == [6 * p for p in range(0, 30, SPOT_CHECK_EVERY)]
    with pytest.raises(ValueError, match="run"):
        interleave(_runs(calls), lambda: 0, random.Random(1), 1, run=3, settle=3)


def test_interleave_in_runs_times_the_kept_calls() -> None:
    nap = 0.01
    seen: list[int] = []

    def slow_at_first(argument: int) -> int:
        seen.append(argument)
        if len(seen) % 4 in (1, 2):  # the first two calls of each 4-call run sleep
            time.sleep(nap)
        return argument

    times, _ = interleave(_runs({"single": lambda a: a, "cluster": slow_at_first}), lambda: 0, random.Random(1), 5,
                          run=4, settle=2)  # fmt: skip
    assert len(times["cluster"]) == 10 and max(times["cluster"]) < nap * 1e9  # the sleeping calls were not kept


def test_interleave_times_each_call_alone() -> None:
    nap = 0.02

    def slow(argument: int) -> int:
        time.sleep(nap)
        return argument

    times, _ = interleave(_runs({"single": lambda a: a, "cluster": slow}), lambda: 0, random.Random(1), 9)
    assert min(times["cluster"]) >= nap * 1e9  # the clock holds the whole call
    assert np.median(times["single"]) < nap * 1e9  # and not the other arm's call


def test_interleave_for_a_duration() -> None:
    started = time.monotonic()
    times, firsts = interleave(_runs({a: (lambda x: x) for a in ARMS}), lambda: 1, random.Random(1), 1, seconds=0.05)
    assert time.monotonic() - started >= 0.05
    assert len(firsts) > 1  # --duration replaces --pairs
    assert len(times["single"]) == len(times["cluster"]) == len(firsts)


def _response(values: list[list[Any]], statuses: list[list[int]] | None = None) -> OnlineResponse:
    statuses = statuses or [[FieldStatus.PRESENT] * len(v) for v in values]
    return OnlineResponse(["commodity_code", "current_price"], values, statuses, [[0] * len(v) for v in values])


def test_check_answers() -> None:
    rows = [{"commodity_code": "CMD00001"}, {"commodity_code": "CMD00002"}]
    same: list[list[Any]] = [["CMD00001", "CMD00002"], [1.5, 2.5]]
    check_answers(rows, {"single": _response(same), "cluster": _response([list(c) for c in same])})
    with pytest.raises(ValueError, match="differently"):
        check_answers(rows, {"single": _response(same), "cluster": _response([same[0], [1.5, 2.6]])})
    missing: list[list[int]] = [[FieldStatus.PRESENT] * 2, [FieldStatus.PRESENT, FieldStatus.NOT_FOUND]]
    with pytest.raises(ValueError, match="PRESENT"):
        check_answers(rows, {"single": _response(same, missing), "cluster": _response(same, missing)})


def _sample(n: int = 3000, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds of two arms: a drifting machine, the second arm ~1.4x the first plus noise."""
    gen = np.random.default_rng(seed)
    drift = 1 + 0.5 * np.sin(np.arange(n) / 300)
    single = (200_000 + gen.gamma(2.0, 20_000, n)) * drift
    cluster = (280_000 + gen.gamma(2.0, 30_000, n)) * drift
    return np.round(single), np.round(cluster)


def _independent_bootstrap(s: np.ndarray, c: np.ndarray, block: int, resamples: int, seed: int) -> dict[str, Any]:
    """The same block bootstrap written on indices (µs): blocks of consecutive positions, drawn with
    replacement by the same generator, then 5th and 95th percentiles."""
    count = len(s) // block
    edges = np.array_split(np.arange(len(s)), count)
    gen = np.random.default_rng(seed)
    ratios, diffs = [], []
    for _ in range(resamples):
        idx = np.concatenate([edges[j] for j in gen.integers(0, count, count)])
        ratios.append(np.median(c[idx]) / np.median(s[idx]))
        diffs.append(np.median(c[idx] - s[idx]))
    return {
        "p50_ratio_90ci": [round(float(np.percentile(ratios, q)), 4) for q in (5, 95)],
        "median_pair_diff_90ci_us": [round(float(np.percentile(diffs, q)), 2) for q in (5, 95)],
    }


def test_paired_stats_against_numpy() -> None:
    single_ns, cluster_ns = _sample()
    stats = paired_stats(list(single_ns.astype(int)), list(cluster_ns.astype(int)), 100, resamples=300, seed=9)
    single, cluster = single_ns / 1e3, cluster_ns / 1e3
    assert stats["p50_ratio"] == round(float(np.median(cluster) / np.median(single)), 4)
    assert stats["median_pair_diff_us"] == round(float(np.median(cluster - single)), 2)
    assert stats["mean_pair_diff_us"] == round(float(np.mean(cluster - single)), 2)
    assert stats["share_pairs_cluster_slower"] == round(float(np.mean(cluster > single)), 3)
    assert stats["blocks"] == 30
    expected = _independent_bootstrap(single, cluster, 100, 300, 9)
    assert stats["p50_ratio_90ci"] == expected["p50_ratio_90ci"]
    assert stats["median_pair_diff_90ci_us"] == expected["median_pair_diff_90ci_us"]
    low, high = stats["p50_ratio_90ci"]
    assert low < stats["p50_ratio"] < high
    per_block = [np.median(c) / np.median(s) for s, c in zip(np.array_split(single, 30), np.array_split(cluster, 30),
                                                             strict=True)]  # fmt: skip
    assert stats["block_p50_ratios"] == {
        "min": round(float(min(per_block)), 3),
        "median": round(float(np.median(per_block)), 3),
        "max": round(float(max(per_block)), 3),
    }


def test_paired_stats_of_exact_shifts() -> None:
    single = [100_000 + (i * 7919) % 50_000 for i in range(2000)]
    scaled = paired_stats(single, [round(v * 1.25) for v in single], 200, resamples=200)
    assert scaled["p50_ratio"] == pytest.approx(1.25, abs=1e-4)
    assert scaled["p50_ratio_90ci"] == pytest.approx([1.25, 1.25], abs=1e-4)
    assert scaled["share_pairs_cluster_slower"] == 1.0
    shifted = paired_stats(single, [v + 30_000 for v in single], 200, resamples=200)
    assert shifted["median_pair_diff_us"] == 30.0 and shifted["median_pair_diff_90ci_us"] == [30.0, 30.0]
    same = paired_stats(single, single, 200, resamples=200)
    assert same["p50_ratio"] == 1.0 and same["p50_ratio_90ci"] == [1.0, 1.0]
    assert same["share_pairs_cluster_slower"] == 0.0
    few = paired_stats(single[:150], single[:150], 200)
    assert few["blocks"] == 0 and "p50_ratio_90ci" not in few and "block_p50_ratios" not in few


def test_paired_blocks() -> None:
    first, second = list(range(1050)), [v * 2 for v in range(1050)]
    a, b = paired_blocks(first, second, 100)
    assert len(a) == len(b) == 10
    assert np.concatenate(a).tolist() == first and np.concatenate(b).tolist() == second  # each pair once, in order
    assert {len(x) for x in a} == {105}
    assert paired_blocks(first[:99], second[:99], 100) == ([], [])
    with pytest.raises(ValueError, match="one length"):
        paired_blocks(first, second[:-1], 100)
    with pytest.raises(ValueError, match="block"):
        paired_blocks(first, second, 0)


def test_block_bootstrap_intervals_levels_and_blocks() -> None:
    single, cluster = _sample(2000, seed=2)
    measures = {"ratio": lambda s, c: float(np.median(c) / np.median(s))}
    wide = block_bootstrap_intervals(single, cluster, 100, measures, resamples=400, level=90)["ratio"]
    narrow = block_bootstrap_intervals(single, cluster, 100, measures, resamples=400, level=50)["ratio"]
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1]  # same draws, inner percentiles
    assert block_bootstrap_intervals(single[:150], cluster[:150], 100, measures) == {}


def test_by_position() -> None:
    times = {"single": [10_000, 20_000, 30_000, 40_000], "cluster": [50_000, 60_000, 70_000, 80_000]}
    firsts = ["single", "cluster", "single", "single"]
    assert by_position(times, firsts) == {
        "single_first_p50_us": 30.0,  # pairs 0, 2, 3
        "single_second_p50_us": 20.0,
        "cluster_first_p50_us": 60.0,  # pair 1
        "cluster_second_p50_us": 70.0,  # pairs 0, 2, 3
        "first_calls_p50_ratio": 2.0,  # 60 / 30
    }
    never = by_position(times, ["single"] * 4)
    assert never["cluster_first_p50_us"] is None and never["first_calls_p50_ratio"] is None


def test_workload_option() -> None:
    assert parse_workloads("W2a,W2b") == ["W2a", "W2b"]
    assert parse_workloads(" W2b ") == ["W2b"]
    for bad in ("W2c", "", "W2a,W3a"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_workloads(bad)


def test_build_order() -> None:
    assert build_order("single") == ("single", "cluster")
    assert build_order("cluster") == ("cluster", "single")
    with pytest.raises(ValueError, match="build first"):
        build_order("both")


def test_the_default_build_order_puts_the_known_bias_against_the_cluster() -> None:
    # single calls favour the store set up first, runs the one set up second (the docstring's A/A sittings)
    assert default_build_first(1) == "single"
    assert default_build_first(20) == "cluster"
