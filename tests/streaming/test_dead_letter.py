"""Dead letters: undecodable messages, schema violations and late events each land in ``{topic}.dlq``
with the original key and value and the right headers, and count in the metric; nothing else is lost."""

from __future__ import annotations

from pathlib import Path

import orjson

from ladle import FeatureStore
from streaming.stream_repo import (
    BASE_US,
    DELAY_S,
    Event,
    assert_offline_matches,
    assert_online_matches,
    create_topic,
    ends_of,
    make_repo,
    message,
    produce,
    read_dead_letters,
    running,
    tick,
    unique,
    wait_committed,
)

S = 1_000_000


def test_each_kind_of_bad_message_is_dead_lettered_with_its_reason(kafka: str, tmp_path: Path) -> None:
    topic, group = unique("dlq"), unique("g")
    create_topic(kafka, topic, 1)
    repo = make_repo(tmp_path / "repo", kafka, topic, stream={"dead_letter_suffix": ".dead"})
    good = [tick("gold", BASE_US + i * S, 10.0 + i, 1.0) for i in range(20)]
    stamp = "2024-03-01T00:00:30Z"
    bad: list[tuple[bytes, str, str]] = [  # value, reason, a word the error names
        (b'{"commodity_code": "gold", "event_timestamp": ', "undecodable", ""),
        (b"[1, 2, 3]", "undecodable", "object"),
        (orjson.dumps({"event_timestamp": stamp, "price": 1.0}), "schema", "commodity_code"),
        (orjson.dumps({"commodity_code": "gold", "event_timestamp": stamp, "price": "high"}), "schema", "price"),
        (orjson.dumps({"commodity_code": "gold", "event_timestamp": None, "price": 1.0}), "schema", "event_timestamp"),
        (orjson.dumps({"commodity_code": 7, "event_timestamp": stamp, "price": 1.0}), "schema", "commodity_code"),
    ]
    late_row = tick("gold", BASE_US + (19 - DELAY_S - 3) * S, 99.0, 5.0)  # older than newest - delay
    events = [Event(0, message(r), r) for r in good[:10]]
    events += [Event(0, value, None) for value, _, _ in bad]
    events += [Event(0, message(r), r) for r in good[10:]]
    events.append(Event(0, message(late_row), late_row))
    store = FeatureStore(repo_path=repo)
    with running(store, group_id=group) as process:
        produce(kafka, topic, events)
        wait_committed(kafka, group, topic, ends_of(events, 1))
        metrics = process.runner.metrics.render().decode()
    letters = read_dead_letters(kafka, f"{topic}.dead", len(bad) + 1)
    by_offset = {int(d["headers"]["ladle.source.offset"]): d for d in letters}
    assert len(letters) == len(by_offset) == len(bad) + 1
    for e, (value, reason, word) in zip(events[10:16], bad, strict=True):
        letter = by_offset[e.offset]
        assert letter["value"] == value and letter["key"] is None
        assert letter["headers"]["ladle.reason"] == reason
        assert word in letter["headers"]["ladle.error"]
        assert letter["headers"]["ladle.source.topic"] == topic
        assert letter["headers"]["ladle.source.partition"] == "0"
    late = by_offset[events[-1].offset]
    assert late["headers"]["ladle.reason"] == "late" and late["key"] == b"gold"
    assert late["value"] == events[-1].value
    assert 'ladle_stream_dead_letters_total{reason="undecodable",source="ticks"} 2.0' in metrics
    assert 'ladle_stream_dead_letters_total{reason="schema",source="ticks"} 4.0' in metrics
    assert 'ladle_stream_dead_letters_total{reason="late",source="ticks"} 1.0' in metrics
    assert 'ladle_stream_events_accepted_total{source="ticks"} 20.0' in metrics
    assert_offline_matches(repo, events)
    assert_online_matches(store, events)
    store.close()
