"""librdkafka's mock cluster (``MockBroker``, the W5 benchmark's second broker) serves what ``ladle stream``
relies on: topics of a chosen partition count, consumer groups with rebalancing after a ``kill -9``
(session timeout), synchronous offset commits read back on assignment, and the idempotent
dead-letter producer. The kill -9 test of test_kill_restart.py runs here again on it, unchanged:
nothing lost, nothing counted twice, every late event dead-lettered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import streaming.stream_repo
import streaming.test_kill_restart
from ladle.streaming.mockbroker import MockBroker


@pytest.fixture(scope="module")
def mock_broker() -> Iterator[MockBroker]:
    with MockBroker() as broker:
        yield broker


def test_topics_of_any_partition_count(mock_broker: MockBroker) -> None:
    from confluent_kafka.admin import AdminClient

    from ladle.errors import BackendError

    mock_broker.create_topic("mock-one", 1)
    mock_broker.create_topic("mock-three", 3)
    with pytest.raises(BackendError, match="mock-one"):
        mock_broker.create_topic("mock-one", 1)
    topics = AdminClient({"bootstrap.servers": mock_broker.bootstrap_servers}).list_topics(timeout=10).topics
    assert len(topics["mock-one"].partitions) == 1 and len(topics["mock-three"].partitions) == 3


@pytest.mark.slow
def test_kill_9_on_the_mock_broker(mock_broker: MockBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
        # the mock serves no CreateTopics; the dead-letter topic too, which ladle stream would create
        mock_broker.create_topic(topic, partitions)
        mock_broker.create_topic(f"{topic}.dlq", partitions)

    monkeypatch.setattr(streaming.stream_repo, "create_topic", create_topic)
    monkeypatch.setattr(streaming.test_kill_restart, "create_topic", create_topic)
    streaming.test_kill_restart.test_kill_9_twice_loses_nothing_and_counts_nothing_twice(
        mock_broker.bootstrap_servers, tmp_path
    )
