"""Dead letters (rules 1 and 2): messages that were not accepted, sent on to ``{topic}{suffix}``.

A dead letter keeps the original key, value and headers and adds these headers:

==========================  ========================================================
``ladle.reason``            ``late``, ``undecodable`` or ``schema``
``ladle.error``             one line: why (the watermark, the field and its value, …)
``ladle.source.topic``      the topic the message came from
``ladle.source.partition``  its partition (decimal)
``ladle.source.offset``     its offset (decimal)
==========================  ========================================================

The producer is idempotent (``enable.idempotence``), and :meth:`DeadLetters.flush` waits until
every dead letter is acknowledged; the stream process calls it before it commits the offsets of
the messages concerned. A crash between the two sends those dead letters again on restart, so a
reader identifies them by the ``ladle.source.*`` headers (at least once, never lost).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ladle.errors import BackendUnavailableError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

REASON = "ladle.reason"
ERROR = "ladle.error"
SOURCE_TOPIC = "ladle.source.topic"
SOURCE_PARTITION = "ladle.source.partition"
SOURCE_OFFSET = "ladle.source.offset"
REASONS = ("late", "undecodable", "schema")


class DeadLetters:
    """An idempotent producer of dead letters."""

    def __init__(self, kafka_config: Mapping[str, Any], suffix: str) -> None:
        from confluent_kafka import Producer

        config = {
            "linger.ms": 5,
            **kafka_config,
            "enable.idempotence": True,
            "acks": "all",
        }
        self.suffix = suffix
        self._producer = Producer(config)
        self._failed: list[str] = []
        self._lock = threading.Lock()
        self.pending = 0

    def topic_for(self, topic: str) -> str:
        """The dead-letter topic of a source topic."""
        return f"{topic}{self.suffix}"

    def send(self, message: Message, reason: str, detail: str) -> None:
        """Queue one message as a dead letter (sent in the background; see :meth:`flush`)."""
        headers = list(message.headers() or [])
        headers += [
            (REASON, reason.encode()),
            (ERROR, detail.encode()[:1000]),
            (SOURCE_TOPIC, str(message.topic()).encode()),
            (SOURCE_PARTITION, str(message.partition()).encode()),
            (SOURCE_OFFSET, str(message.offset()).encode()),
        ]
        while True:
            try:
                self._producer.produce(
                    self.topic_for(str(message.topic())),
                    key=message.key(),
                    value=message.value(),
                    headers=headers,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:  # the local queue is full: let it drain
                self._producer.poll(0.05)
        self.pending += 1
        self._producer.poll(0)

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._failed.append(str(err))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued dead letter is acknowledged; BackendUnavailableError if not."""
        if self.pending:
            left = self._producer.flush(timeout)
            if left:
                raise BackendUnavailableError(f"{left} dead letters were not acknowledged in {timeout:.0f} s")
        with self._lock:
            failed, self._failed = self._failed, []
        if failed:
            raise BackendUnavailableError(f"{len(failed)} dead letters were refused by the broker: {failed[0]}")
        self.pending = 0

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued (best effort) and release the producer."""
        self._producer.flush(timeout)
