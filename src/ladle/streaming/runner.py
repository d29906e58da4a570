"""The consume loop of ``ladle stream``: Kafka → decode → incremental engine → online, files, dead letters.

One :class:`StreamRunner` owns one confluent-kafka consumer subscribed to the topics of every
Kafka source it runs, in one consumer group. Each micro-batch (``consume(max_batch_events,
poll_timeout)``) is handled in this order:

1. decode (rule 1), once per source for all its partitions; undecodable and schema messages are
   queued as dead letters;
2. ``SourceEngine.process`` once per source, on the decoded events of all its partitions (rules
   2-8, each partition with its own state); late events are queued as dead letters, accepted events
   are buffered per partition for the batch source;
3. the engine's rows are written online, one ``OnlineStore.write`` per view per micro-batch.

Every ``offline_flush_seconds`` (or as soon as a partition buffers ``offline_flush_events``) the
buffered events are handed to a worker thread (:mod:`ladle.streaming.flusher`), so the loop goes on
reading while they are stored:

4. each source's buffered events are stored by its sink (:mod:`ladle.streaming.sink`): one Parquet
   file per partition (:mod:`ladle.streaming.offline_log`), or one Iceberg commit for all
   partitions (:mod:`ladle.streaming.iceberg_log`);
5. the dead-letter producer is flushed (every dead letter acknowledged);
6. once the loop sees that job finished, it commits the offsets, synchronously: per partition, the
   offset after the last message whose effects are all stored (online, in files, or acknowledged
   as a dead letter), as of the hand-over.

So an offset is never committed beyond what is both online and in files (or the Iceberg table).
On a rebalance and on the way out the loop waits for the job in flight and flushes the rest itself.
After a crash the partition's next owner deletes the events past the committed offset from the
sink, restores the engine from the events that remain, and reads on from the committed offset:
nothing lost, nothing counted twice.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import KafkaSource, StreamFeatureView
from ladle.errors import BackendError, BackendUnavailableError
from ladle.streaming.dead_letter import DeadLetters
from ladle.streaming.decode import OFFSET, PARTITION, Decoder
from ladle.streaming.flusher import Flusher
from ladle.streaming.metrics import StreamMetrics
from ladle.streaming.sink import OfflineSink
from ladle.streaming.tables import by_partition, online_rows
from ladle.types import EVENT_TIMESTAMP

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

    from ladle.online.base import OnlineStore

log = logging.getLogger(__name__)
_US_PER_S = 1_000_000


class Step(Protocol):
    """What the engine returns for one micro-batch (``ladle.aggregation.incremental.Step``)."""

    @property
    def accepted(self) -> pa.Table: ...
    @property
    def late(self) -> pa.Table: ...
    @property
    def rows(self) -> Mapping[str, pa.Table]: ...
    @property
    def watermarks(self) -> Mapping[int, int]: ...


class Engine(Protocol):
    """The incremental engine of one source, for the partitions this process holds (``SourceEngine``)."""

    def restore(self, partition: int, accepted: pa.Table) -> None: ...
    def drop(self, partition: int) -> None: ...
    def process(self, events: pa.Table) -> Step: ...
    def retained_by_partition(self) -> dict[int, int]: ...


EngineFactory = Callable[[KafkaSource, Sequence[StreamFeatureView]], Engine]


def default_engine_factory(source: KafkaSource, views: Sequence[StreamFeatureView]) -> Engine:
    """A ``SourceEngine`` from :mod:`ladle.aggregation.incremental`."""
    from ladle.aggregation.incremental import SourceEngine

    engine: Engine = SourceEngine(source, views)
    return engine


@dataclass(frozen=True)
class RunnerSettings:
    """How one runner consumes (from ``stream:`` in feature_store.yaml and the CLI)."""

    group_id: str
    bootstrap_servers: str
    kafka: Mapping[str, Any] = field(default_factory=dict)
    dead_letter_suffix: str = ".dlq"
    max_batch_events: int = 10_000
    poll_timeout_ms: int = 50
    offline_flush_seconds: float = 1.0
    offline_flush_events: int = 50_000

    def consumer_config(self) -> dict[str, Any]:
        """librdkafka consumer settings: Ladle's defaults, then ``stream.kafka`` (which wins), then ours."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "fetch.wait.max.ms": 5,
            "enable.partition.eof": False,
            **self.kafka,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }

    def producer_config(self) -> dict[str, Any]:
        """librdkafka producer settings for dead letters (``stream.kafka`` minus consumer-only keys)."""
        consumer_only = {"auto.offset.reset", "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
                         "fetch.wait.max.ms", "group.instance.id", "partition.assignment.strategy",
                         "isolation.level", "fetch.min.bytes", "fetch.max.bytes", "group.protocol"}  # fmt: skip
        kept = {k: v for k, v in self.kafka.items() if k not in consumer_only}
        return {"bootstrap.servers": self.bootstrap_servers, **kept}


@dataclass
class SourcePlan:
    """One Kafka source and what the runner needs for it."""

    source: KafkaSource
    views: list[StreamFeatureView]
    decoder: Decoder
    log: OfflineSink
    #: how far back (µs, before the partition's newest event time) restored events reach
    lookback_us: int


@dataclass
class SourceState:
    """One source on one partition: the accepted events not yet in a file (its state is in the source's engine)."""

    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0
    first_pending: int | None = None


@dataclass
class PartitionState:
    """One assigned partition."""

    topic: str
    partition: int
    position: int  # the next offset to read: every earlier message is handled
    committed: int
    sources: dict[str, SourceState]

    def commit_offset(self) -> int:
        """The offset safe to commit: before the first event still only in memory."""
        firsts = [s.first_pending for s in self.sources.values() if s.first_pending is not None]
        return min([*firsts, self.position])


@dataclass
class Batch:
    """One partition's messages of a loop turn (those past its position), with their offsets."""

    state: PartitionState
    messages: list[Message] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


class StreamRunner:
    """Runs the consume loop until :meth:`stop` (or a signal handler calling it)."""

    def __init__(
        self,
        project: str,
        plans: Sequence[SourcePlan],
        online: OnlineStore,
        settings: RunnerSettings,
        metrics: StreamMetrics | None = None,
        engine_factory: EngineFactory = default_engine_factory,
    ) -> None:
        self.project = project
        self.plans = list(plans)
        self.online = online
        self.settings = settings
        self.metrics = metrics or StreamMetrics()
        self.engine_factory = engine_factory
        self.by_topic: dict[str, list[SourcePlan]] = {}
        for plan in self.plans:
            self.by_topic.setdefault(plan.source.topic, []).append(plan)
        self.views = {v.name: v for p in self.plans for v in p.views}
        #: per source: one engine for every partition this runner holds (and parked ones)
        self.engines = {p.source.name: engine_factory(p.source, p.views) for p in self.plans}
        self._partitions: dict[tuple[str, int], PartitionState] = {}
        self._parked: dict[tuple[str, int], PartitionState] = {}
        self._stop = threading.Event()
        self._last_flush = time.monotonic()
        self._dlq: DeadLetters | None = None
        self._consumer: Consumer | None = None
        self._warned: set[str] = set()
        self._failed = False
        #: stores buffered events off the loop; hands back (offsets to commit, start time) per job
        self._flusher: Flusher[tuple[list[tuple[PartitionState, int]], float]] = Flusher()
        #: monotonic time of the last loop turn (for /health)
        self.heartbeat = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its micro-batch, flush, commit and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def assignment(self) -> list[tuple[str, int]]:
        """The partitions this runner holds now."""
        return sorted(self._partitions)

    def run(self) -> None:
        """Consume until stopped; flush and commit on the way out."""
        from confluent_kafka import Consumer, KafkaException

        self._dlq = DeadLetters(self.settings.producer_config(), self.settings.dead_letter_suffix)
        consumer = Consumer(self.settings.consumer_config(), logger=log)
        self._consumer = consumer
        frozen = _freeze_heap()
        try:
            consumer.subscribe(
                sorted(self.by_topic), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            self._loop(consumer)
        except BaseException as exc:
            # Something of the last micro-batch may be missing online or in files: leave the group
            # without writing or committing anything more (the next owner replays from the commit).
            self._failed = True
            if isinstance(exc, KafkaException):
                err = exc.args[0] if exc.args else None
                raise BackendUnavailableError(f"Kafka: {err.str() if err is not None else exc}") from exc
            raise
        finally:
            try:
                consumer.close()  # revokes: the callback flushes and commits what is left
            finally:
                self._consumer = None
                self._flusher.close()  # after a failure a job may still be storing: it commits nothing
                self._dlq.close()
                if frozen:
                    gc.unfreeze()

    def _loop(self, consumer: Consumer) -> None:
        timeout = self.settings.poll_timeout_ms / 1000
        most = self.settings.max_batch_events
        while not self._stop.is_set():
            # Take what librdkafka has already fetched; when nothing is there, wait for the first
            # message only and then take the rest: consume(n, timeout) would wait out the timeout
            # whenever fewer than n messages arrive in it, which is a latency floor of its own.
            messages = consumer.consume(most, 0)
            if not messages:
                messages = consumer.consume(1, timeout)
                if messages and most > 1:
                    messages += consumer.consume(most - 1, 0)
            if messages:
                began = time.perf_counter()
                self._handle(messages)
                self.metrics.batch.observe(time.perf_counter() - began)
            self._maybe_flush(consumer)
            self.heartbeat = time.monotonic()
        self._flush(consumer, list(self._partitions.values()))

    # -- one micro-batch -----------------------------------------------------------------------

    def _handle(self, messages: list[Message]) -> None:
        # One pass over the messages: each partition's batch (what is past its position) and the
        # message timestamps. librdkafka hands a partition's messages over in offset order.
        batches: dict[tuple[str, int], Batch | None] = {}
        stamps: list[int] = []
        for m in messages:
            err = m.error()
            if err is not None:
                self._kafka_error(err)
                continue
            key = (m.topic(), m.partition())
            if key not in batches:  # None: revoked since it was fetched, the next owner reads it
                state = self._partitions.get(key)
                batches[key] = None if state is None else Batch(state)
            batch = batches[key]
            offset = m.offset()
            if batch is None or offset < batch.state.position:
                continue
            batch.messages.append(m)
            batch.offsets.append(offset)
            stamps.append(m.timestamp()[1])
        by_topic: dict[str, list[Batch]] = {}
        for (topic, _), batch in batches.items():
            if batch is not None and batch.messages:
                by_topic.setdefault(topic, []).append(batch)
                batch.state.position = batch.offsets[-1] + 1
        out: dict[str, list[pa.Table]] = {}
        for topic, parts in by_topic.items():
            for plan in self.by_topic[topic]:  # one engine call per source for all its partitions
                self._process(plan, parts, out)
        self._write_online(out)
        if stamps:
            now_ms = time.time() * 1000
            self.metrics.latency.observe_many(np.maximum(now_ms - np.asarray(stamps, np.float64), 0.0) / 1000)

    def _process(self, plan: SourcePlan, parts: list[Batch], out: dict[str, list[pa.Table]]) -> None:
        """Decode the partitions' messages and run the source's engine on them, each once; queue what follows."""
        name = plan.source.name
        if len(parts) == 1:
            messages, offsets = parts[0].messages, parts[0].offsets
        else:  # partition by partition, each in offset order
            messages = [m for b in parts for m in b.messages]
            offsets = [o for b in parts for o in b.offsets]
        partitions = [b.state.partition for b in parts for _ in b.messages]
        decoded = plan.decoder.decode([m.value() for m in messages], partitions, offsets)
        self.metrics.events_in.labels(source=name).inc(len(messages))
        for r in decoded.rejected:
            self._dead_letter(name, messages[r.index], r.reason, r.detail)
        if not decoded.table.num_rows:
            return
        engine = self.engines[name]
        step = engine.process(decoded.table)
        if step.late.num_rows:
            by_offset = {(p, int(m.offset())): m for p, m in zip(partitions, messages, strict=True)}
            delay = plan.source.watermark_delay_threshold
            late = zip(step.late.column(PARTITION).to_pylist(), step.late.column(OFFSET).to_pylist(), strict=True)
            for partition, offset in late:
                detail = (
                    f"event time is older than the partition's newest accepted event time minus "
                    f"watermark_delay_threshold ({delay}); watermark now {_iso(step.watermarks.get(partition))}"
                )
                self._dead_letter(name, by_offset[partition, offset], "late", detail)
        accepted = step.accepted
        if accepted.num_rows:
            self.metrics.accepted.labels(source=name).inc(accepted.num_rows)
            buffers = {b.state.partition: b.state.sources[name] for b in parts}
            for partition, piece in by_partition(accepted):
                buffer = buffers[partition]
                if buffer.first_pending is None:
                    buffer.first_pending = int(piece.column(OFFSET)[0].as_py())
                buffer.pending.append(piece)
                buffer.pending_rows += piece.num_rows
        for view_name, rows in step.rows.items():
            if rows.num_rows:
                out.setdefault(view_name, []).append(rows)

    def _dead_letter(self, source: str, message: Message, reason: str, detail: str) -> None:
        assert self._dlq is not None
        self._dlq.send(message, reason, detail)
        self.metrics.dead_letters.labels(source=source, reason=reason).inc()

    def _write_online(self, out: Mapping[str, list[pa.Table]]) -> None:
        for view_name, tables in out.items():
            view = self.views[view_name]
            rows = online_rows(view, pa.concat_tables(tables) if len(tables) > 1 else tables[0])
            if view.online:
                self.online.write(self.project, view, rows)
            self.metrics.emitted.labels(feature_view=view_name).inc(sum(t.num_rows for t in tables))
            newest = rows.column(EVENT_TIMESTAMP).cast(pa.int64())
            top = pc.max(newest).as_py()
            if top is not None:
                self.metrics.set_newest(view_name, top / _US_PER_S)

    def _kafka_error(self, err: KafkaError) -> None:
        from confluent_kafka import KafkaException

        if err.fatal():
            raise BackendError(f"Kafka: {err.str()}") from KafkaException(err)
        text = err.str()
        if text not in self._warned:  # e.g. a topic that does not exist yet: said once
            self._warned.add(text)
            log.warning("Kafka: %s", text)

    # -- flush and commit ------------------------------------------------------------------------

    def _maybe_flush(self, consumer: Consumer) -> None:
        self._reap(consumer, wait=False)
        now = time.monotonic()
        states = list(self._partitions.values())
        limit = self.settings.offline_flush_events
        due = now - self._last_flush >= self.settings.offline_flush_seconds
        if not due:
            due = any(s.pending_rows >= limit for p in states for s in p.sources.values())
        if not due:
            return
        if self._flusher.busy:  # the previous job is still storing: wait for it only if buffers pile up
            if not any(s.pending_rows >= 2 * limit for p in states for s in p.sources.values()):
                return
            self._reap(consumer, wait=True)
        self._hand_over(states)
        self._update_lag(consumer, states)
        self._update_retained(states)

    def _hand_over(self, states: Sequence[PartitionState]) -> None:
        """Give the buffered events of ``states`` to the flusher; their offsets are committed when it is done."""
        started = time.perf_counter()
        taken = [(plan, self._take(plan, states)) for plan in self.plans]
        todo = [(s, s.commit_offset()) for s in states]
        dlq = self._dlq
        assert dlq is not None

        def store() -> None:
            for plan, batches in taken:
                self._store(plan, batches)
            dlq.flush()

        self._flusher.submit(store, (todo, started))
        self._last_flush = time.monotonic()

    def _reap(self, consumer: Consumer, wait: bool) -> None:
        """Commit the offsets of the flush job that finished (or, with ``wait``, of the one in flight)."""
        done = self._flusher.reap(wait)
        if done is None:
            return
        todo, started = done
        # a partition revoked or lost meanwhile is not ours to commit (revokes wait for the job first)
        self._commit(consumer, [(s, o) for s, o in todo if self._partitions.get((s.topic, s.partition)) is s])
        self.metrics.commit_seconds.observe(time.perf_counter() - started)

    def _flush(self, consumer: Consumer, states: Sequence[PartitionState]) -> None:
        """Store the buffered events of ``states`` (files or Iceberg), flush dead letters, commit their
        offsets, here and now (after the job in flight, whose offsets are committed first)."""
        self._reap(consumer, wait=True)
        started = time.perf_counter()
        for plan in self.plans:
            self._store(plan, self._take(plan, states))
        assert self._dlq is not None
        self._dlq.flush()
        self._commit(consumer, [(s, s.commit_offset()) for s in states])
        self._last_flush = time.monotonic()
        self.metrics.commit_seconds.observe(time.perf_counter() - started)

    def _take(self, plan: SourcePlan, states: Sequence[PartitionState]) -> dict[int, pa.Table]:
        """The source's buffered events of every partition of ``states`` (its topic's), which then buffer nothing."""
        batches: dict[int, pa.Table] = {}
        for partition in states:
            if partition.topic != plan.source.topic:
                continue
            state = partition.sources[plan.source.name]
            if state.pending:
                batches[partition.partition] = (
                    pa.concat_tables(state.pending) if len(state.pending) > 1 else state.pending[0]
                )
            state.pending, state.pending_rows, state.first_pending = [], 0, None
        return batches

    def _store(self, plan: SourcePlan, batches: Mapping[int, pa.Table]) -> None:
        """Hand the source's events of every partition to its sink at once (one commit for Iceberg)."""
        if not batches:
            return
        plan.log.write_all(batches)
        self.metrics.offline_rows.labels(source=plan.source.name).inc(sum(t.num_rows for t in batches.values()))

    def _commit(self, consumer: Consumer, offsets: Sequence[tuple[PartitionState, int]]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        todo = [(s, o) for s, o in offsets if o > s.committed]
        if not todo:
            return
        try:
            consumer.commit(offsets=[TopicPartition(s.topic, s.partition, o) for s, o in todo], asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance under way: the next flush (or owner) commits
            log.warning("Kafka: commit failed, will retry: %s", exc.args[0].str() if exc.args else exc)
            return
        for s, o in todo:
            s.committed = o

    def _update_lag(self, consumer: Consumer, states: Sequence[PartitionState]) -> None:
        from confluent_kafka import TopicPartition

        for s in states:
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(s.topic, s.partition), cached=True)
            except Exception:  # no fetch response yet: no number to show
                continue
            if high is not None and high >= 0:
                self.metrics.lag.labels(topic=s.topic, partition=str(s.partition)).set(max(0, high - s.position))

    def _update_retained(self, states: Sequence[PartitionState]) -> None:
        """The engines' retained-events gauges, refreshed at each flush (not every turn: it is a
        walk over each engine's state, and the gauge is read every few seconds at most)."""
        for plan in self.plans:
            retained = self.engines[plan.source.name].retained_by_partition()
            for s in states:
                if s.topic == plan.source.topic:
                    gauge = self.metrics.retained.labels(source=plan.source.name, partition=str(s.partition))
                    gauge.set(retained.get(s.partition, 0))

    # -- rebalance --------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._reap(consumer, wait=True)  # no sink is written while partitions are truncated and restored
        committed = consumer.committed(partitions, timeout=10) if partitions else []
        for tp, c in zip(partitions, committed, strict=True):
            key = (str(tp.topic), int(tp.partition))
            start = int(c.offset) if c.offset is not None and c.offset >= 0 else self._reset_offset(consumer, tp)
            parked = self._parked.pop(key, None)
            for plan in self.by_topic[key[0]]:
                plan.log.truncate_from(key[1], start)
            if parked is not None and parked.position == start and parked.commit_offset() == start:
                state = parked  # nobody moved this partition since we gave it up: the engine is current
            else:
                state = self._restore(key, start)
            state.committed = int(c.offset) if c.offset is not None and c.offset >= 0 else -1
            self._partitions[key] = state
            tp.offset = start
        consumer.assign(partitions)
        log.info("assigned %s", ", ".join(f"{t}[{p}]" for t, p in sorted(self._partitions)) or "nothing")

    def _restore(self, key: tuple[str, int], start: int) -> PartitionState:
        sources: dict[str, SourceState] = {}
        for plan in self.by_topic[key[0]]:
            engine = self.engines[plan.source.name]
            engine.drop(key[1])  # what it may hold of an earlier assignment is stale
            history = plan.log.read_recent(key[1], plan.lookback_us)
            if history.num_rows:
                engine.restore(key[1], history)
            sources[plan.source.name] = SourceState()
            retained = engine.retained_by_partition().get(key[1], 0)
            self.metrics.retained.labels(source=plan.source.name, partition=str(key[1])).set(retained)
        return PartitionState(key[0], key[1], start, -1, sources)

    def _reset_offset(self, consumer: Consumer, tp: TopicPartition) -> int:
        """Where a partition without a committed offset starts (``auto.offset.reset``)."""
        from confluent_kafka import KafkaException

        reset = str(self.settings.consumer_config().get("auto.offset.reset", "earliest"))
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException as exc:
            raise BackendUnavailableError(f"Kafka: cannot read the offsets of {tp.topic}[{tp.partition}]") from exc
        return int(high if reset in ("latest", "largest", "end") else low)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._failed:
            self._drop(partitions)
            return
        states = [s for tp in partitions if (s := self._partitions.pop((tp.topic, tp.partition), None)) is not None]
        if states:
            self._flush(consumer, states)
        for s in states:
            self._parked[(s.topic, s.partition)] = s
            self._forget(s)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else may own them already: write nothing more for them (their owner replays).
        self._drop(partitions)
        self._reap(consumer, wait=True)  # commits only what is still ours
        log.warning("lost %d partitions (session timeout); their unflushed events are replayed by the next owner",
                    len(partitions))  # fmt: skip

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            state = self._partitions.pop((tp.topic, tp.partition), None)
            if state is not None:
                self._forget(state)
                for plan in self.by_topic.get(str(tp.topic), []):
                    self.engines[plan.source.name].drop(int(tp.partition))

    def _forget(self, state: PartitionState) -> None:
        with contextlib.suppress(KeyError):
            self.metrics.lag.remove(state.topic, str(state.partition))


def _freeze_heap() -> bool:
    """Move every object alive now out of the cyclic garbage collector's reach (``gc.freeze``).

    The process holds about 100,000 long-lived objects after start (pyarrow, pandas, DuckDB, the
    registry); each full collection walked them all, about 50 ms of CPU in the middle of a
    micro-batch, every ten seconds or so at 10,000 events/s. Frozen, a full collection walks only
    what the stream made since. Objects are still freed by reference counting; only
    cycles among the frozen ones wait for :func:`gc.unfreeze` (at the end of :meth:`StreamRunner.run`).
    False when the collector is off (nothing to do).
    """
    if not gc.isenabled():
        return False
    gc.collect()
    gc.freeze()
    return True


def _iso(micros: int | None) -> str:
    if micros is None:
        return "none"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(micros / _US_PER_S, UTC).isoformat()
