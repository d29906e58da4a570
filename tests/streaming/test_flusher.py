"""The offline half of a flush runs off the consume loop (ladle.streaming.flusher): events reach the
online store while their files are still being written, and no offset is committed before they are."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pytest

from ladle import FeatureStore
from ladle.streaming.decode import OFFSET
from ladle.streaming.flusher import Flusher
from ladle.streaming.offline_log import OfflineLog
from streaming.stream_repo import (
    assert_offline_matches,
    assert_online_matches,
    committed,
    create_topic,
    ends_of,
    make_repo,
    offline_rows,
    produce,
    random_events,
    running,
    unique,
    wait_committed,
)


def test_a_job_is_reaped_only_once_it_finished_and_hands_back_its_follow_up() -> None:
    flusher: Flusher[str] = Flusher()
    release, ran = threading.Event(), list[int]()

    def store() -> None:
        release.wait(10)
        ran.append(1)

    flusher.submit(store, "commit 7")
    try:
        assert flusher.busy
        assert flusher.reap(wait=False) is None  # still storing
        with pytest.raises(RuntimeError, match="still in flight"):
            flusher.submit(lambda: None, "another")
        release.set()
        assert flusher.reap(wait=True) == "commit 7"
        assert ran == [1]
        assert not flusher.busy
        assert flusher.reap(wait=True) is None  # nothing left
    finally:
        release.set()
        flusher.close()


def test_a_failed_job_is_raised_where_it_is_reaped() -> None:
    flusher: Flusher[int] = Flusher()

    def fail() -> None:
        raise OSError("disk full")

    flusher.submit(fail, 1)
    try:
        with pytest.raises(OSError, match="disk full"):
            flusher.reap(wait=True)
        flusher.submit(lambda: None, 2)  # the flusher is usable again
        assert flusher.reap(wait=True) == 2
    finally:
        flusher.close()


@pytest.mark.slow
def test_online_does_not_wait_for_files_and_offsets_wait_for_both(
    kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, group = unique("flusher"), unique("g")
    create_topic(kafka, topic, 1)
    repo = make_repo(tmp_path / "repo", kafka, topic)
    events = random_events(random.Random(11), 600, partitions=1, keys=4)
    gate, entered = threading.Event(), threading.Event()
    blocked: list[int] = []
    write_all = OfflineLog.write_all

    def held(self: OfflineLog, batches: Mapping[int, pa.Table]) -> None:
        if not gate.is_set():
            blocked.extend(int(t.column(OFFSET)[0].as_py()) for t in batches.values())
            entered.set()
            gate.wait(60)
        write_all(self, batches)

    monkeypatch.setattr(OfflineLog, "write_all", held)
    store = FeatureStore(repo_path=repo)
    try:
        with running(store, group_id=group):
            produce(kafka, topic, events[:300])
            assert entered.wait(30), "no flush started"
            produce(kafka, topic, events[300:])
            deadline = time.monotonic() + 30
            while True:  # every event is online while the first file is still being written
                try:
                    assert_online_matches(store, events)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            assert not gate.is_set() and offline_rows(repo).num_rows == 0
            assert committed(kafka, group, topic, 1)[0] <= min(blocked), "committed past events not yet in files"
            gate.set()
            wait_committed(kafka, group, topic, ends_of(events, 1))
        assert_offline_matches(repo, events)
        assert_online_matches(store, events)
    finally:
        gate.set()
        store.close()
