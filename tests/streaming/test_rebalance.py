"""Scale out and in: a second stream process joins the group mid-stream, then the first stops
(SIGTERM's path: finish, flush, commit). Partitions move between them; the results are the reference's."""

from __future__ import annotations

import random
import threading
import time
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
    wait_progress,
)


@pytest.mark.slow
def test_a_second_process_joins_and_the_first_leaves_mid_stream(kafka: str, tmp_path: Path) -> None:
    topic, group = unique("rebal"), unique("g")
    create_topic(kafka, topic, 4)
    repo = make_repo(tmp_path / "repo", kafka, topic)
    events = random_events(random.Random(11), 6000, partitions=4, keys=3)
    chunks = [events[i : i + 400] for i in range(0, len(events), 400)]
    stop_feeding = threading.Event()

    def feed() -> None:
        for chunk in chunks:
            produce(kafka, topic, chunk)
            time.sleep(0.3)
        stop_feeding.set()

    first, second = FeatureStore(repo_path=repo), FeatureStore(repo_path=repo)
    producer = threading.Thread(target=feed)
    with running(first, group_id=group) as a:
        producer.start()
        done = wait_progress(kafka, group, topic, 4, 0)
        with running(second, group_id=group) as b:
            deadline = time.monotonic() + 30
            while not (a.runner.assignment() and b.runner.assignment()) and time.monotonic() < deadline:
                time.sleep(0.1)
            shared = (a.runner.assignment(), b.runner.assignment())
            assert all(shared), f"both processes hold partitions after the join: {shared}"
            wait_progress(kafka, group, topic, 4, done)
            a.stop()  # the first leaves while events still arrive
            producer.join(60)
            wait_committed(kafka, group, topic, ends_of(events, 4), timeout=60)
            assert len(b.runner.assignment()) == 4, "the remaining process took every partition"
    assert stop_feeding.is_set()
    try:
        assert_offline_matches(repo, events)
        assert_online_matches(first, events)
    finally:
        first.close()
        second.close()
    late = late_positions(repo, events)
    letters = read_dead_letters(kafka, f"{topic}.dlq", len(late))
    got = {(int(d["headers"]["ladle.source.partition"]), int(d["headers"]["ladle.source.offset"])) for d in letters}
    assert got == late
