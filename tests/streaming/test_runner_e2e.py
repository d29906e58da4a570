"""End to end through the real broker: JSON ticks → ladle stream (in a thread) → online rows equal to
the reference's, files holding each accepted event once, late events dead-lettered."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ladle import FeatureStore
from streaming.stream_repo import (
    assert_offline_matches,
    assert_online_matches,
    create_topic,
    ends_of,
    late_positions,
    make_repo,
    produce,
    random_events,
    read_dead_letters,
    running,
    unique,
    wait_committed,
)


@pytest.mark.slow
def test_json_events_reach_online_and_files_as_the_reference_says(kafka: str, tmp_path: Path) -> None:
    topic, group = unique("e2e"), unique("g")
    create_topic(kafka, topic, 2)
    repo = make_repo(tmp_path / "repo", kafka, topic)
    events = random_events(random.Random(7), 3000, partitions=2, keys=4)
    store = FeatureStore(repo_path=repo)
    with running(store, group_id=group):
        produce(kafka, topic, events[:1500])
        produce(kafka, topic, events[1500:])
        wait_committed(kafka, group, topic, ends_of(events, 2))
    assert_online_matches(store, events)
    assert_offline_matches(repo, events)
    late = late_positions(repo, events)
    assert late, "the generator makes late events"
    letters = read_dead_letters(kafka, f"{topic}.dlq", len(late))
    got = {(int(d["headers"]["ladle.source.partition"]), int(d["headers"]["ladle.source.offset"])) for d in letters}
    assert got == late
    assert {d["headers"]["ladle.reason"] for d in letters} == {"late"}
    store.close()
