"""``/metrics``, ``/health`` and ``/ready`` of a running stream process; ``/ready`` turns 503 when the
broker goes away (this test starts its own broker, so stopping it disturbs nobody)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ladle import FeatureStore
from ladle.streaming.broker import LocalBroker, free_port
from streaming.conftest import require_broker
from streaming.stream_repo import (
    Event,
    create_topic,
    ends_of,
    make_repo,
    message,
    produce,
    running,
    tick,
    wait_committed,
)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} is not in /metrics"
    return float(match.group(1))


@pytest.mark.slow
def test_metrics_health_and_ready_then_ready_fails_without_the_broker(tmp_path: Path) -> None:
    require_broker()
    with LocalBroker() as broker:
        kafka = broker.bootstrap_servers
        topic, group = "metrics-ticks", "metrics-group"
        create_topic(kafka, topic, 2)
        port = free_port()
        repo = make_repo(tmp_path / "repo", kafka, topic, stream={"metrics_port": port})
        now_us = time.time_ns() // 1000
        rows = [tick(f"k{i % 4}", now_us - (50 - i) * 10_000, 10.0 + i, 1.0) for i in range(50)]
        events = [Event(i % 2, message(r), r) for i, r in enumerate(rows)]
        store = FeatureStore(repo_path=repo)
        base = f"http://127.0.0.1:{port}"
        with running(store, group_id=group):
            produce(kafka, topic, events)
            wait_committed(kafka, group, topic, ends_of(events, 2))
            time.sleep(0.6)  # one more flush tick refreshes the lag gauges
            status, health = get(f"{base}/health")
            assert status == 200 and json.loads(health)["status"] == "ok"
            status, ready = get(f"{base}/ready")
            body = json.loads(ready)
            assert status == 200 and body["ready"] is True
            assert set(body["checks"]) == {"kafka", "online_store", "offline:ticks"}
            status, text = get(f"{base}/metrics")
            assert status == 200
            assert sample(text, 'ladle_stream_events_total{source="ticks"}') == 50
            assert sample(text, 'ladle_stream_events_accepted_total{source="ticks"}') == 50
            assert sample(text, 'ladle_stream_rows_emitted_total{feature_view="ticks_raw"}') == 50
            assert sample(text, "ladle_stream_event_to_online_seconds_count") == 50
            assert sample(text, 'ladle_stream_event_to_online_seconds_bucket{le="+Inf"}') == 50
            batches = sample(text, "ladle_stream_batch_seconds_count")
            assert 1 <= batches <= 50  # one per micro-batch that held messages
            assert sample(text, 'ladle_stream_batch_seconds_bucket{le="+Inf"}') == batches
            assert sample(text, "ladle_stream_batch_seconds_sum") > 0
            for p in (0, 1):
                assert sample(text, f'ladle_stream_consumer_lag{{partition="{p}",topic="{topic}"}}') == 0
            retained = sample(text, 'ladle_stream_engine_retained_events{partition="0",source="ticks"}')
            assert retained > 0
            freshness = sample(text, 'ladle_stream_feature_freshness_seconds{feature_view="ticks_raw"}')
            newest = max(r["event_timestamp"] for r in rows) / 1e6
            assert abs(freshness - (time.time() - newest)) < 5
            assert sample(text, "ladle_stream_commit_seconds_count") >= 1
            broker.stop()
            status, ready = get(f"{base}/ready")
            body = json.loads(ready)
            assert status == 503 and body["ready"] is False
            assert body["checks"]["kafka"] != "ok" and body["checks"]["online_store"] == "ok"
        store.close()
