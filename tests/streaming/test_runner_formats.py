"""The same end-to-end check with Avro messages (bare and Confluent-framed) and with Redis online."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from ladle import FeatureStore
from streaming.stream_repo import (
    Event,
    assert_offline_matches,
    assert_online_matches,
    avro_message,
    create_topic,
    ends_of,
    make_repo,
    produce,
    random_events,
    running,
    unique,
    wait_committed,
)


@pytest.mark.slow
def test_avro_events_bare_and_framed(kafka: str, tmp_path: Path) -> None:
    topic, group = unique("avro"), unique("g")
    create_topic(kafka, topic, 2)
    repo = make_repo(tmp_path / "repo", kafka, topic, avro=True)
    rng = random.Random(3)
    events = [
        Event(e.partition, avro_message(e.row, framed=rng.random() < 0.5), e.row)
        for e in random_events(rng, 1500, partitions=2, keys=3)
        if e.row is not None
    ]
    store = FeatureStore(repo_path=repo)
    with running(store, group_id=group) as process:
        produce(kafka, topic, events)
        wait_committed(kafka, group, topic, ends_of(events, 2))
        metrics = process.runner.metrics.render().decode()
    assert 'reason="undecodable"' not in metrics and 'reason="schema"' not in metrics
    assert 'ladle_stream_events_total{source="ticks"} 1500.0' in metrics
    assert_online_matches(store, events)
    assert_offline_matches(repo, events)
    store.close()


@pytest.mark.slow
@pytest.mark.redis
def test_redis_online_store(kafka: str, redis_address: str, tmp_path: Path) -> None:
    topic, group = unique("redis"), unique("g")
    create_topic(kafka, topic, 2)
    project = f"stream_{uuid.uuid4().hex[:10]}"  # its own keys: an earlier run's rows cannot pass for this one's
    online = {"type": "redis", "connection_string": redis_address}
    repo = make_repo(tmp_path / "repo", kafka, topic, online=online, project=project)
    events = random_events(random.Random(5), 1500, partitions=2, keys=3)
    store = FeatureStore(repo_path=repo)
    try:
        with running(store, group_id=group):
            produce(kafka, topic, events)
            wait_committed(kafka, group, topic, ends_of(events, 2))
        assert_online_matches(store, events)
        assert_offline_matches(repo, events)
    finally:
        store.teardown()
        store.close()
