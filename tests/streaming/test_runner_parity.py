"""Parity through the real broker: event sequences with out-of-order, duplicate and late events go
through Kafka and one long-lived stream process; it writes rows only at the reference's (key, time)
pairs, each key ends online at the reference's newest row and values, and its dead letters are
exactly the reference's late events.

Each example has its own keys and starts an hour after the previous example's newest event, so the
partition's watermark (which carries over) never judges one example by another's events. Written
rows are captured by a recording wrapper around the real online store (a spy: every write still
reaches SQLite); dead letters by a real consumer of the dead-letter topic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladle import FeatureStore, StreamFeatureView
from ladle.definitions import FeatureView
from ladle.online.base import OnlineStore
from ladle.types import EVENT_TIMESTAMP
from streaming.reference import close, expected
from streaming.stream_repo import (
    BASE_US,
    Event,
    arrivals,
    create_topic,
    ends_of,
    make_repo,
    message,
    produce,
    running,
    tick,
    unique,
    wait_committed,
)

S = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RecordingStore:
    """The real online store, remembering every row written through it."""

    def __init__(self, inner: OnlineStore) -> None:
        self.inner = inner
        self.config_class = inner.config_class
        self.written: dict[str, list[dict[str, Any]]] = {}

    def write(self, project: str, view: FeatureView, rows: pa.Table) -> int:
        self.written.setdefault(view.name, []).extend(rows.to_pylist())
        return self.inner.write(project, view, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class World:
    kafka: str
    topic: str
    group: str
    repo: Path
    spy: RecordingStore
    views: dict[str, StreamFeatureView]
    produced: list[Event] = field(default_factory=list)
    dlq: Any = None
    examples: int = 0
    base_us: int = BASE_US


@pytest.fixture(scope="module")
def world(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from confluent_kafka import Consumer, TopicPartition

    topic, group = unique("parity"), unique("g")
    create_topic(kafka, topic, 1)
    repo = make_repo(tmp_path_factory.mktemp("parity") / "repo", kafka, topic)
    store = FeatureStore(repo_path=repo)
    spy = RecordingStore(store.online_store)
    snapshot = store.snapshot(allow_cache=False)
    views = {n: v for n, v in snapshot.feature_views.items() if isinstance(v, StreamFeatureView)}
    with running(store, group_id=group, online=spy):  # type: ignore[arg-type]
        dlq = Consumer({"bootstrap.servers": kafka, "group.id": unique("dlq"), "enable.auto.commit": False})
        dlq.assign([TopicPartition(f"{topic}.dlq", 0, 0)])
        try:
            yield World(kafka, topic, group, repo, spy, views, dlq=dlq)
        finally:
            dlq.close()
    store.close()


def drain(consumer: Any, quiet: float = 0.5) -> list[int]:
    """Source offsets of the dead letters that arrived since the last drain."""
    out: list[int] = []
    until = time.monotonic() + quiet
    while time.monotonic() < until:
        for m in consumer.consume(500, 0.1):
            if m.error() is None:
                out.append(int(dict(m.headers())["ladle.source.offset"]))
                until = time.monotonic() + quiet
    return out


EVENT = st.tuples(
    st.integers(0, 2),  # key
    st.integers(0, 240),  # time, in half seconds from the example's base
    st.floats(1, 100, allow_nan=False).map(lambda x: round(x, 2)),
    st.sampled_from([0.0, 1.0, 2.5, 10.0]),
)


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(EVENT, min_size=1, max_size=40))
def test_every_written_row_ends_at_the_reference_value(
    world: World, drawn: Sequence[tuple[int, int, float, float]]
) -> None:
    world.examples += 1
    prefix = f"x{world.examples}_"
    rows = [tick(f"{prefix}{k}", world.base_us + t * S // 2, price, volume) for k, t, price, volume in drawn]
    events = [Event(0, message(r), r) for r in rows]
    produce(world.kafka, world.topic, events)
    world.produced.extend(events)
    wait_committed(world.kafka, world.group, world.topic, ends_of(world.produced, 1), timeout=30)
    found = arrivals(events)
    for name, view in world.views.items():
        ref = expected(view, found)
        last: dict[tuple[str, int], dict[str, Any]] = {}
        for row in world.spy.written.get(name, []):
            if row["commodity_code"].startswith(prefix):
                t = (row[EVENT_TIMESTAMP] - EPOCH) // timedelta(microseconds=1)
                last[(row["commodity_code"], t)] = row
        want = {(key[0], t): values for (key, t), values in ref.rows.items()}
        if view.slide_interval is not None:  # hopping rows are written once the watermark passes them
            mark = ref.watermarks[0]
            want = {ident: v for ident, v in want.items() if mark is not None and mark > ident[1]}
        # No row is written at a (key, time) the reference does not have ...
        extra = sorted(set(last) - set(want))
        assert not extra, f"{name}: rows written at {extra[:5]}, which the reference does not have"
        # ... and what each key ends with online, its newest written row, is the reference's newest row.
        # (A micro-batch writes each key's newest row only: older rows of the key would not stay
        # online, so a correction of one may be skipped when a newer row of its key comes along.)
        newest: dict[str, int] = {}
        for k, t in want:
            newest[k] = max(newest.get(k, t), t)
        final: dict[str, int] = {}
        for k, t in last:
            final[k] = max(final.get(k, t), t)
        assert final == newest, f"{name}: newest rows written {final} != reference {newest}"
        for k, t in final.items():
            for feature, value in want[(k, t)].items():
                got = last[(k, t)][feature]
                assert close(got, value), f"{name} {(k, t)} {feature}: written {got!r}, reference {value!r}"
    late = {a.offset for a in expected(world.views["ticks_raw"], found).late}
    assert set(drain(world.dlq)) == late
    world.base_us = max(r["event_timestamp"] for r in rows) + 3600 * S
