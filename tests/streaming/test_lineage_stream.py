"""``ladle stream`` sends OpenLineage START, periodic RUNNING, and COMPLETE on SIGTERM (real broker, real CLI)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from streaming.stream_repo import (
    BASE_US,
    Event,
    create_topic,
    make_repo,
    message,
    produce,
    start_stream,
    tick,
    unique,
    wait_committed,
)
from unit.test_lineage_events import check


def events(path: Path) -> list[dict[str, Any]]:
    """The events written so far: whole lines only (the stream may be writing the last one)."""
    text = path.read_text() if path.exists() else ""
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


@pytest.mark.slow
def test_ladle_stream_lineage_run(kafka: str, tmp_path: Path) -> None:
    topic, group = unique("lineage"), unique("g")
    create_topic(kafka, topic, 1)
    repo = make_repo(tmp_path / "repo", kafka, topic)
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["lineage"] = {"transport": "file", "file": "lineage.jsonl", "running_interval_seconds": 0.2}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    path = repo / "lineage.jsonl"
    child = start_stream(repo, group, tmp_path / "stream.log")
    try:
        deadline = time.monotonic() + 60
        while sum(e["eventType"] == "RUNNING" for e in events(path)) < 2:
            assert child.poll() is None, (tmp_path / "stream.log").read_text()
            assert time.monotonic() < deadline, "no RUNNING events from ladle stream"
            time.sleep(0.05)
        rows = [tick("k0", BASE_US + i * 1_000_000, 10.0 + i, 1.0) for i in range(20)]
        produce(kafka, topic, [Event(0, message(r), r) for r in rows])
        wait_committed(kafka, group, topic, {0: 20})
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == 0, (tmp_path / "stream.log").read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    got = events(path)
    for event in got:
        check(event)
    states = [e["eventType"] for e in got]
    assert states[0] == "START" and states[-1] == "COMPLETE" and set(states[1:-1]) == {"RUNNING"}
    assert len({e["run"]["runId"] for e in got}) == 1
    start = got[0]
    assert start["job"]["name"] == "ladle.stream"
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [(f"kafka://{kafka}", topic)]
    assert start["run"]["facets"]["ladle"]["facts"]["groupId"] == group
    done = got[-1]["run"]["facets"]["ladle"]["facts"]
    assert done["eventsRead"] == 20 and done["eventsAccepted"] == 20 and done["deadLetters"] == 0
    assert done["rowsWritten"] == 20  # appended to the batch source by the time it stopped
