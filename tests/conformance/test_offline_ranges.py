"""Entity-hash range pulls (``PartitionedPull``: what materialization in bounded memory reads).

For every offline store that has them: the ranges of a partition of the buckets together return
exactly the rows of a brute-force reference (per entity, the newest row in the window, the
greatest created time among equal event times, a null created time losing), each entity in
exactly one range, and each range only entities whose key hash falls in it. Stores without the
capability are skipped (they are pulled unchunked).
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime
from typing import Any

import pytest

from ladle.definitions import Entity
from ladle.materialize.partitions import PartitionedPull, partitioned_pull
from ladle.offline.hashing import BUCKETS, HashRange
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP, Float64, Int64

from .offline_backends import OfflineBuilder, SourceTable
from .offline_support import at, commodity, feature_rows, make_view, market, pulled

CUTS = [0, 1, 700, 701, 2048, 4000, BUCKETS]


def _rows(seed: int, entities: int = 120) -> SourceTable:
    rng = random.Random(seed)
    codes: list[str | None] = []
    markets: list[int | None] = []
    events: list[float] = []
    created: list[float | None] = []
    prices: list[float] = []
    for e in range(entities):
        for _ in range(rng.randint(1, 4)):
            codes.append(f"c{e}")
            markets.append(e % 5)
            minute = rng.randint(0, 40)
            events.append(minute)
            created.append(None if rng.random() < 0.2 else minute + rng.randint(0, 3))
            prices.append(round(rng.random() * 100, 3))
    codes.append(None)  # a null key is never pulled
    markets.append(1)
    events.append(5)
    created.append(5)
    prices.append(-1.0)
    return feature_rows({"code": codes, "market_id": markets}, events, {"price": prices}, created=created)


def _reference(table: SourceTable, keys: tuple[str, ...], start: datetime, end: datetime) -> dict[Any, Any]:
    best: dict[Any, Any] = {}
    for row in table.table.to_pylist():
        key = tuple(row[k] for k in keys)
        if any(k is None for k in key) or not start <= row["event_ts"] <= end:
            continue
        rank = (row["event_ts"], row["created"] is not None, row["created"] or row["event_ts"])
        if key not in best or rank > best[key][0]:
            best[key] = (rank, row["price"], row["event_ts"], row["created"])
    return {k: v[1:] for k, v in best.items()}


def _ranged(pull: PartitionedPull, view: Any, start: datetime, end: datetime, part: HashRange) -> list[dict[str, Any]]:
    return pulled(pull.pull_latest_range(view, start, end, part, 7), list(view.join_keys))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("entities", "keys"),
    [((commodity,), ("code",)), ((commodity, market), ("code", "market_id")), ((market,), ("market_id",))],
)
def test_ranges_partition_the_newest_rows(
    offline: OfflineBuilder, seed: int, entities: tuple[Entity, ...], keys: tuple[str, ...]
) -> None:
    table = _rows(seed)
    setup = offline({"prices": table})
    pull = partitioned_pull(setup.store)
    if pull is None:
        pytest.skip(f"{type(setup.store).__name__} has no range pulls (pulled unchunked)")
    view = make_view(setup.sources["prices"], "prices", entities=entities)
    start, end = at(5), at(35)
    seen: dict[Any, Any] = {}
    for lo, hi in itertools.pairwise(CUTS):
        for row in _ranged(pull, view, start, end, HashRange(BUCKETS, lo, hi)):
            key = tuple(row[k] for k in view.join_keys)
            assert key not in seen, f"entity {key} in two ranges"
            seen[key] = (row["price"], row[EVENT_TIMESTAMP], row[CREATED_TIMESTAMP])
    reference = _reference(table, tuple(view.join_keys), start, end)
    assert seen == reference
    assert tuple(view.join_keys) == keys
    whole = _ranged(pull, view, start, end, HashRange(BUCKETS, 0, BUCKETS))
    assert len(whole) == len(reference)
    estimate = pull.estimate_entities(view, start, end)
    assert len(reference) <= estimate <= table.table.num_rows  # small windows: the row count bounds it


def test_a_range_holds_only_its_buckets(offline: OfflineBuilder) -> None:
    """The same entity always lands in the same range, and disjoint ranges never share one."""
    table = _rows(3)
    setup = offline({"prices": table})
    pull = partitioned_pull(setup.store)
    if pull is None:
        pytest.skip(f"{type(setup.store).__name__} has no range pulls (pulled unchunked)")
    view = make_view(setup.sources["prices"], "prices")
    start, end = at(0), at(45)
    first = {r["code"] for r in _ranged(pull, view, start, end, HashRange(BUCKETS, 0, 2048))}
    again = {r["code"] for r in _ranged(pull, view, start, end, HashRange(BUCKETS, 0, 2048))}
    rest = {r["code"] for r in _ranged(pull, view, start, end, HashRange(BUCKETS, 2048, BUCKETS))}
    assert first == again and first and rest and not first & rest


def test_typed_keys_and_features_come_back_as_the_view_declares(offline: OfflineBuilder) -> None:
    table = feature_rows({"code": ["a", "b", "a"]}, [1, 2, 3], {"qty": [1, 2, 3], "price": [1.5, 2.5, 3.5]})
    setup = offline({"prices": table})
    pull = partitioned_pull(setup.store)
    if pull is None:
        pytest.skip(f"{type(setup.store).__name__} has no range pulls (pulled unchunked)")
    view = make_view(setup.sources["prices"], "prices", features=[("qty", Int64), ("price", Float64)])
    rows = _ranged(pull, view, at(0), at(10), HashRange(BUCKETS, 0, BUCKETS))
    assert [(r["code"], r["qty"], r["price"]) for r in rows] == [("a", 3, 3.5), ("b", 2, 2.5)]
