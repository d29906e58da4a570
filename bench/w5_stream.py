"""W5: the stream path, publish → readable online, measured from outside (``ladle stream`` on Redis).

Processes (all on this machine, which they share; ``nproc`` and the load are reported):

* a local broker with one topic of ``--partitions`` partitions: Tansu (``LocalBroker``, ``--broker tansu``,
  the default) or librdkafka's mock cluster (``MockBroker``, ``--broker mock``: in memory, C threads,
  a fetch cost that does not grow with the log; docs/streaming.md, "The broker's limit");
* ``--processes`` ``ladle stream`` processes (one consumer group) computing the view ``w5_price``
  (``current_price`` = last price 1 h, ``price_mean_1h``, ``volume_24h`` = sum 24 h, ``events_24h`` =
  count 24 h, ``last_sent`` = last publish time) into Redis (127.0.0.1:6379, a fresh project);
* ``--producers`` producer processes publishing ticks for ``--entities`` entities (round-robin) at a
  fixed offered rate (``--rate`` events/s in total) for ``--duration`` seconds; each message carries
  its publish time (``sent_at``, also its event time);
* this process, the observer: it polls ``--sample`` entities through Ladle's online read API
  (``FeatureStore.get_online_features``) and records when each published ``last_sent`` first becomes
  readable: latency = first seen - publish time. It samples the stream processes' RSS (psutil) and
  reads their peak (``VmHWM``) before stopping them.

After the producers stop, the observer waits (up to ``--drain`` s) until the ``events_24h`` of every
entity adds up to what was published; an entity whose count is lower lost events, higher counted
some twice. The offline rows the stream appended are counted too (after SIGTERM flushes them).

    .venv/bin/pip install -e '.[bench]'                  # psutil, quixstreams (for --engine quix)
    .venv/bin/python -m bench.w5_stream                   # 10,000 entities, 10,000 events/s, 60 s
    .venv/bin/python -m bench.w5_stream --broker mock     # the same on librdkafka's mock cluster
    .venv/bin/python -m bench.w5_stream --rate 2000 --duration 20 --processes 2
    .venv/bin/python -m bench.w5_stream --find-max --duration 30          # step the rate up until lag grows
    .venv/bin/python -m bench.w5_stream --engine quix --rate 2000 --duration 20
    .venv/bin/python -m bench.w5_stream --push --duration 10               # REST /push rows/s, one client

Besides the latencies a row reports the producers' ``produce()`` → broker acknowledgement times
(``producer_ack_p50_ms``/``p99``: every 16th message's delivery report; the producers' ``linger.ms`` is
``--linger-ms``, 1 by default, as a tick publisher that wants its ticks out at once would set it) and,
for ``ladle``, the observer's read time and poll cycle (``observer_read_p50_ms``, ``observer_cycle_ms``):
the pieces of the publish → readable time that are not the stream process's.

``--engine bare`` runs a bare confluent-kafka consumer per process instead (``ladle stream``'s consumer
settings and loop shape, no decoding, no engine, no write): its latency (publish time carried in the
message → consumed, over every message after the warm-up) is the floor the broker, librdkafka and
the machine put under ``ladle stream``. ``--kafka KEY=VALUE`` (repeatable) sets librdkafka consumer
settings for both (``stream.kafka`` of the run's feature_store.yaml).

``--engine quix`` runs the same producers against a minimal quixstreams 3.28.1 app per process
(sliding 1 h window: latest price, mean price, latest publish time per key; each update written to a
Redis hash), observed through the Redis keys: it is here to document why the hot path is not
quixstreams (bench/README.md, W5).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.common import emit, percentile

VIEW = "w5_price"
REDIS = "127.0.0.1:6379"
ENTITY_FORMAT = "CMD{:05d}"
_REPO_FILE = """
from datetime import timedelta

from ladle import (Aggregation, Entity, FeatureView, Field, FileSource, Float64, JsonFormat, KafkaSource, PushSource,
                   StreamFeatureView, ValueType)

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
ticks = KafkaSource(
    name="w5_ticks", kafka_bootstrap_servers="{servers}", topic="{topic}", timestamp_field="event_timestamp",
    message_format=JsonFormat("commodity_code string, event_timestamp timestamp, price double, volume double, "
                              "sent_at double"),
    batch_source=FileSource(name="w5_ticks_offline", path="offline/ticks/*.parquet", timestamp_field="event_timestamp"),
    watermark_delay_threshold=timedelta(seconds=30),
)
w5_price = StreamFeatureView(
    name="{view}", source=ticks, entities=[commodity], ttl=timedelta(days=1),
    aggregations=[
        Aggregation(column="price", function="last", time_window=timedelta(hours=1), name="current_price"),
        Aggregation(column="price", function="mean", time_window=timedelta(hours=1), name="price_mean_1h"),
        Aggregation(column="volume", function="sum", time_window=timedelta(hours=24), name="volume_24h"),
        Aggregation(column="price", function="count", time_window=timedelta(hours=24), name="events_24h"),
        Aggregation(column="sent_at", function="last", time_window=timedelta(hours=1), name="last_sent"),
    ],
)
pushed_source = FileSource(name="w5_pushed_offline", path="offline/pushed/*.parquet", timestamp_field="event_timestamp")
pushed = PushSource(name="w5_push", batch_source=pushed_source)
w5_pushed = FeatureView(
    name="w5_pushed", source=pushed, entities=[commodity], ttl=timedelta(days=1),
    schema=[Field(name="current_price", dtype=Float64), Field(name="volume_24h", dtype=Float64)],
)
"""


# -- producer (a child process) ---------------------------------------------------------------------


def produce(
    servers: str, topic: str, rate: float, seconds: float, entities: int, part: int, parts: int, linger_ms: float = 1
) -> None:
    """Publish ticks of the entities ``i ≡ part (mod parts)`` at ``rate`` events/s; print a JSON summary."""
    from confluent_kafka import Producer

    config = {"bootstrap.servers": servers, "linger.ms": linger_ms, "queue.buffering.max.messages": 1_000_000}
    producer = Producer(config)
    acks: list[float] = []  # produce() → broker acknowledgement, seconds, of every 16th message

    def acked(err: Any, msg: Any) -> None:
        if err is None:
            acks.append(msg.latency())

    mine = list(range(part, entities, parts))
    counts = [0] * len(mine)
    sent = behind = 0
    slot = 0.01
    began = time.time()
    while True:
        elapsed = time.time() - began
        if elapsed >= seconds:
            break
        due = int(min(elapsed + slot, seconds) * rate)
        while sent < due:
            k = sent % len(mine)
            now = time.time()
            code = ENTITY_FORMAT.format(mine[k])
            value = {"commodity_code": code, "event_timestamp": now, "price": 100.0 + (sent % 997) / 100,
                     "volume": 1.0, "sent_at": now}  # fmt: skip
            try:
                if sent % 16:
                    producer.produce(topic, json.dumps(value).encode(), code.encode())
                else:
                    producer.produce(topic, json.dumps(value).encode(), code.encode(), on_delivery=acked)
            except BufferError:
                producer.poll(0.05)
                continue
            counts[k] += 1
            sent += 1
        producer.poll(0)
        lag = time.time() - began - (elapsed + slot)
        if lag > 0.5:
            behind += 1
        # wait for the next slot in poll(), not sleep(): delivery reports are served as they come, so
        # the sampled acknowledgement times are not stretched to the next slot
        while (left := began + elapsed + slot - time.time()) > 0:
            producer.poll(left)
    left = producer.flush(60)
    wall = time.time() - began
    print(json.dumps({"sent": sent, "undelivered": left, "wall_s": wall, "behind_slots": behind,
                      "cpu_s": time.process_time(), "acks_s": acks,
                      "counts": {ENTITY_FORMAT.format(e): c for e, c in zip(mine, counts, strict=True)}}))  # fmt: skip


# -- bare consumer (a child process) ----------------------------------------------------------------


def bare_consumer(servers: str, topic: str, group: str, kafka: dict[str, Any], after: float, out: str) -> None:
    """Consume like ``ladle stream`` (its consumer settings, its loop) and do nothing else; on SIGTERM
    write the count and latency percentiles (ms) of the messages published at or after ``after``."""
    import numpy as np
    from confluent_kafka import Consumer

    from ladle.streaming.runner import RunnerSettings

    config = RunnerSettings(group_id=group, bootstrap_servers=servers, kafka=kafka).consumer_config()
    consumer = Consumer(config)
    consumer.subscribe([topic])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print("bare consumer: subscribed", flush=True)
    chunks: list[Any] = []
    sent_chunks: list[Any] = []
    count = 0
    while not stopping.is_set():
        messages = consumer.consume(10_000, 0)
        if not messages:
            messages = consumer.consume(1, 0.05)
            if messages:
                messages += consumer.consume(9_999, 0)
        if not messages:
            continue
        now = time.time()
        sent = np.fromiter((orjson_sent(m.value()) for m in messages if m.error() is None), dtype=np.float64)
        count += len(sent)
        chunks.append(now - sent[sent >= after])
        sent_chunks.append(sent[sent >= after])
    consumer.close()
    lat = np.concatenate(chunks) if chunks else np.zeros(0)
    summary: dict[str, Any] = {"consumed": count, "samples": int(lat.size)}
    if lat.size:
        summary.update({f"p{q}_ms": round(float(np.percentile(lat, q)) * 1000, 1) for q in (50, 90, 99)})
        summary["max_ms"] = round(float(lat.max()) * 1000, 1)
        summary.update(by_window(np.concatenate(sent_chunks).tolist(), lat.tolist(), after))
    Path(out).write_text(json.dumps(summary))


def orjson_sent(value: bytes | None) -> float:
    """The ``sent_at`` of one producer message."""
    import orjson

    return float(orjson.loads(value or b"{}").get("sent_at", 0.0))


# -- quixstreams app (a child process) --------------------------------------------------------------


def quix_app(servers: str, topic: str, group: str, prefix: str, state_dir: str) -> None:
    """A minimal quixstreams app: per key, a 1 h sliding window of latest price, mean and latest sent_at → Redis."""
    import redis
    from quixstreams import Application
    from quixstreams.dataframe.windows import aggregations as agg

    client = redis.Redis.from_url(f"redis://{REDIS}")
    app = Application(
        broker_address=servers,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        use_changelog_topics=False,
        # the consumer settings ladle stream uses, so both join the group and fetch alike
        consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000, "fetch.wait.max.ms": 5},
        loglevel=cast(Any, os.environ.get("W5_QUIX_LOGLEVEL", "WARNING")),  # a level name
    )
    source = app.topic(
        topic, value_deserializer="json", timestamp_extractor=lambda v, h, ts, tt: int(v["sent_at"] * 1000)
    )
    sdf = app.dataframe(source)
    sdf = (
        sdf.sliding_window(duration_ms=3_600_000)
        .agg(
            current_price=agg.Latest("price"),
            price_mean_1h=agg.Mean("price"),
            last_sent=agg.Latest("sent_at"),
            events=agg.Count(),
        )
        .current()
    )

    def write(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> None:
        code = key.decode() if isinstance(key, bytes) else str(key)
        client.hset(f"{prefix}{code}", mapping={k: value[k] for k in ("current_price", "price_mean_1h", "last_sent")})

    sdf.update(write, metadata=True)
    app.run()


# -- the observer -----------------------------------------------------------------------------------


@dataclass
class Observation:
    """First-seen times of each sampled publish time."""

    latencies: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)  # the publish time of each latency
    reads: list[float] = field(default_factory=list)  # seconds each poll's read took
    span: float = 0.0  # seconds from the first poll to the last
    seen: dict[str, float] = field(default_factory=dict)
    polls: int = 0


def _rss_tree(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS = VmHWM) of a process and its children, in MB."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    rss = peak = 0.0
    for p in procs:
        try:
            rss += p.memory_info().rss / 2**20
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak += int(line.split()[1]) / 1024
        except (psutil.NoSuchProcess, OSError):
            continue
    return rss, peak


class Reader:
    """Reads ``last_sent`` and the event counts of entities, through Ladle or the quix app's Redis hashes."""

    def __init__(self, engine: str, repo: Path, prefix: str) -> None:
        self.engine, self.prefix = engine, prefix
        if engine == "ladle":
            from ladle import FeatureStore

            self.store = FeatureStore(repo_path=repo)
        else:
            import redis

            self.redis = redis.Redis.from_url(f"redis://{REDIS}")

    def last_sent(self, codes: list[str]) -> list[float | None]:
        if self.engine == "ladle":
            out = self.store.get_online_features(
                features=[f"{VIEW}:last_sent"], entity_rows=[{"commodity_code": c} for c in codes]
            ).to_dict()
            return list(out["last_sent"])
        pipe = self.redis.pipeline()
        for c in codes:
            pipe.hget(f"{self.prefix}{c}", "last_sent")
        return [None if v is None else float(v) for v in pipe.execute()]

    def counts(self, codes: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(codes), 1000):
            chunk = codes[i : i + 1000]
            rows = self.store.get_online_features(
                features=[f"{VIEW}:events_24h"], entity_rows=[{"commodity_code": c} for c in chunk]
            ).to_dict()
            out.update({c: int(v or 0) for c, v in zip(chunk, rows["events_24h"], strict=True)})
        return out


def observe(reader: Reader, sample: list[str], until: threading.Event, after: float, obs: Observation) -> None:
    """Poll the sample until ``until`` is set; latency of each newly seen publish time after ``after``."""
    last: dict[str, float | None] = dict.fromkeys(sample)
    first = time.time()
    while not until.is_set():
        began = time.time()
        values = reader.last_sent(sample)
        now = time.time()
        obs.polls += 1
        obs.reads.append(now - began)
        for code, sent in zip(sample, values, strict=True):
            if sent is not None and sent != last[code]:
                last[code] = sent
                if sent >= after:
                    obs.latencies.append(now - sent)
                    obs.sent.append(sent)
        time.sleep(0.005)
    obs.span = time.time() - first


# -- one run ----------------------------------------------------------------------------------------


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def _wait_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{text!r} did not appear in {log} in {timeout} s")


@dataclass
class Broker:
    """The run's broker: its address, its process (to meter), and how topics are made on it."""

    name: str
    servers: str
    pid: int | None = None
    mock: Any = None  # a ladle.streaming.mockbroker.MockBroker for --broker mock

    def create_topics(self, topics: dict[str, int], config: dict[str, str] | None) -> None:
        """Create the topics (the mock serves no CreateTopics: its own channel makes them, settings ignored)."""
        if self.mock is not None:
            for name, partitions in topics.items():
                self.mock.create_topic(name, partitions)
            return
        from ladle.streaming.publish import ensure_topics

        ensure_topics(self.servers, topics, config)

    def delete_topics(self, topics: list[str]) -> None:
        """Delete the run's topics (the mock serves no DeleteTopics: they stay until it stops)."""
        if self.mock is not None:
            return
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": self.servers, "log_level": 0}).delete_topics(topics)


@dataclass
class Setup:
    """One run's repo, topic, consumer group and key prefix."""

    repo: Path
    topic: str
    group: str
    prefix: str
    broker: Broker
    metrics_ports: list[int] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        workdir: Path,
        broker: Broker,
        partitions: int,
        kafka: dict[str, Any] | None = None,
        topic_config: dict[str, str] | None = None,
    ) -> Setup:
        run = uuid.uuid4().hex[:8]
        setup = cls(workdir / run, f"w5-{run}", f"w5-{run}", f"w5q:{run}:", broker)
        servers = broker.servers
        setup.repo.mkdir()
        (setup.repo / "feature_store.yaml").write_text(
            f"project: w5_{run}\nregistry:\n  path: registry.db\n  cache_ttl_seconds: 60\n"
            f"online_store:\n  type: redis\n  connection_string: {REDIS}\noffline_store:\n  type: duckdb\n"
            f"stream:\n  group_id: {setup.group}\n  metrics_port: 0\n"
            + (f"  kafka: {json.dumps(kafka)}\n" if kafka else "")
        )
        (setup.repo / "w5.py").write_text(_REPO_FILE.format(servers=servers, topic=setup.topic, view=VIEW))
        subprocess.run([*setup.ladle, "apply", "--skip-source-validation"], check=True, capture_output=True)
        # the dead-letter topic too, as ladle stream would at start (the mock serves no CreateTopics)
        broker.create_topics({setup.topic: partitions, f"{setup.topic}.dlq": partitions}, topic_config)
        return setup

    @property
    def servers(self) -> str:
        return self.broker.servers

    @property
    def ladle(self) -> list[str]:
        return [sys.executable, "-m", "ladle", "-c", str(self.repo)]

    def start_workers(
        self, engine: str, processes: int, kafka: dict[str, Any] | None = None, after: float = 0.0
    ) -> list[subprocess.Popen[bytes]]:
        workers: list[subprocess.Popen[bytes]] = []
        for i in range(processes):
            log = self.repo / f"worker{i}.log"
            if engine == "bare":
                role = ["--role", "bare", "--servers", self.servers, "--topic", self.topic, "--group", self.group]
                extra = ["--kafka-json", json.dumps(kafka or {}), "--after", repr(after)]
                out = ["--prefix", str(self.repo / f"bare{i}.json")]
                workers.append(_spawn([sys.executable, "-m", "bench.w5_stream", *role, *extra, *out], log))
                _wait_line(log, "bare consumer:", workers[-1])
            elif engine == "ladle":
                from ladle.streaming.broker import free_port

                self.metrics_ports.append(free_port())
                workers.append(_spawn([*self.ladle, "stream", "--metrics-port", str(self.metrics_ports[-1])], log))
                _wait_line(log, "ladle stream:", workers[-1])
            else:
                role = ["--role", "quix", "--servers", self.servers, "--topic", self.topic, "--group", self.group]
                state = ["--prefix", self.prefix, "--state-dir", str(self.repo / f"state{i}")]
                workers.append(_spawn([sys.executable, "-m", "bench.w5_stream", *role, *state], log))
        return workers

    def start_producers(self, args: argparse.Namespace, rate: float) -> list[tuple[subprocess.Popen[bytes], Path]]:
        # each producer prints its per-entity counts (hundreds of KB): to a file, not a pipe it could fill
        role = ["--role", "producer", "--servers", self.servers, "--topic", self.topic]
        load = [
            "--rate",
            str(rate / args.producers),
            "--duration",
            str(args.duration),
            "--linger-ms",
            str(args.linger_ms),
        ]
        out = []
        for p in range(args.producers):
            log = self.repo / f"producer{p}.json"
            parts = ["--entities", str(args.entities), "--part", str(p), "--parts", str(args.producers)]
            out.append((_spawn([sys.executable, "-m", "bench.w5_stream", *role, *load, *parts], log), log))
        return out

    def cleanup(self, engine: str) -> None:
        if engine == "ladle":
            subprocess.run([*self.ladle, "teardown"], capture_output=True, check=False)
        elif engine == "quix":
            import redis

            client = redis.Redis.from_url(f"redis://{REDIS}")
            keys = list(client.scan_iter(f"{self.prefix}*", count=10_000))
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i : i + 1000])
        self.broker.delete_topics([self.topic, f"{self.topic}.dlq"])


@dataclass
class Published:
    """What the producers report."""

    counts: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    undelivered: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    acks: list[float] = field(default_factory=list)  # produce() → acknowledged, s, a sample

    @classmethod
    def collect(cls, producers: list[tuple[subprocess.Popen[bytes], Path]]) -> Published:
        out = cls()
        for proc, log in producers:
            if proc.wait() != 0:
                raise RuntimeError(f"a producer failed:\n{log.read_text()[-3000:]}")
            row = json.loads([line for line in log.read_text().splitlines() if line.startswith("{")][-1])
            out.counts.update(row["counts"])
            out.sent += row["sent"]
            out.undelivered += row["undelivered"]
            out.wall = max(out.wall, row["wall_s"])
            out.cpu += row.get("cpu_s", 0.0)
            out.acks.extend(row.get("acks_s", []))
        return out

    def ack_latency(self) -> dict[str, float]:
        """p50/p99 (ms) of produce() → broker acknowledgement: the producer's queueing (``linger.ms``),
        the produce request and the broker's append, on a sample of every 16th message."""
        return {f"producer_ack_p{q}_ms": round(percentile(self.acks, q) * 1000, 1) for q in (50, 99)}


def drain(reader: Reader, codes: list[str], total: int, seconds: float) -> tuple[float | None, dict[str, int]]:
    """Wait until the counts add up to ``total``; (seconds it took or None, the last counts)."""
    began = time.time()
    counted: dict[str, int] = {}
    while time.time() - began < seconds:
        counted = reader.counts(codes)
        if sum(counted.values()) >= total:
            return time.time() - began, counted
        time.sleep(1.0)
    return None, counted


def caught_up(reader: Reader, sample: list[str], newest: float, seconds: float) -> float | None:
    """For the quix app (no count to compare): wait until every sampled entity shows an event published
    at or after ``newest`` (each entity gets one every entities/rate seconds); the seconds it took."""
    began = time.time()
    while time.time() - began < seconds:
        if all(v is not None and v >= newest for v in reader.last_sent(sample)):
            return time.time() - began
        time.sleep(0.5)
    return None


def internal_latency(ports: list[int]) -> dict[str, float | None]:
    """p50/p99 (ms, bucket upper bounds) of the stream processes' own histograms: event to online
    (Kafka message timestamp to rows written online, without the observer's polling) and the loop's
    time per micro-batch (``batch``)."""
    texts: list[str] = []
    for port in ports:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            texts.append(conn.getresponse().read().decode())
        except OSError:
            continue
        finally:
            conn.close()
    turns, events = _total(texts, "ladle_stream_batch_seconds_count"), _total(texts, "ladle_stream_events_total")
    return {
        **_quantiles(texts, "ladle_stream_event_to_online_seconds", "stream_internal"),
        **_quantiles(texts, "ladle_stream_batch_seconds", "stream_batch"),
        "stream_turns": turns,
        "stream_events_per_turn": round(events / turns, 1) if turns else None,
    }


def _total(texts: list[str], metric: str) -> float:
    """A counter (or histogram count) summed over processes and labels."""
    return sum(float(line.rsplit(" ", 1)[1]) for t in texts for line in t.splitlines() if line.startswith(metric))


def _quantiles(texts: list[str], metric: str, label: str) -> dict[str, float | None]:
    merged: dict[float, float] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith(f"{metric}_bucket{{"):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                le = float("inf") if bound == "+Inf" else float(bound)
                merged[le] = merged.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    out: dict[str, float | None] = {f"{label}_p50_ms": None, f"{label}_p99_ms": None}
    if not merged or not merged.get(float("inf")):
        return out
    total = merged[float("inf")]
    for name, q in ((f"{label}_p50_ms", 0.5), (f"{label}_p99_ms", 0.99)):
        le = next(b for b in sorted(merged) if merged[b] >= q * total)
        out[name] = round(le * 1000, 1) if le != float("inf") else None
    return out


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes (and their children) used so far."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def redis_cpu() -> float:
    """CPU seconds the Redis server used so far (INFO cpu)."""
    import redis

    info = redis.Redis.from_url(f"redis://{REDIS}").info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class CpuMeter:
    """Where the machine's CPU went while the producers ran: percent of one core per part."""

    broker: int | None
    workers: list[int]
    began: float = field(default_factory=time.time)
    start: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = self.read()

    def read(self) -> dict[str, float]:
        out = {"stream": cpu_seconds(self.workers), "observer": time.process_time(), "redis": redis_cpu()}
        if self.broker is not None:
            out["broker"] = cpu_seconds([self.broker])
        return out

    def broker_windows(
        self, producers: list[tuple[subprocess.Popen[bytes], Path]], window: float = 10.0
    ) -> list[float]:
        """While the producers run: the broker's CPU (% of one core) in each ``window`` seconds."""
        out: list[float] = []
        if self.broker is None:
            return out
        last_t, last_cpu = time.time(), cpu_seconds([self.broker])
        while any(p.poll() is None for p, _ in producers):
            time.sleep(0.5)
            now = time.time()
            if now - last_t >= window:
                cpu = cpu_seconds([self.broker])
                out.append(round(100 * (cpu - last_cpu) / (now - last_t), 1))
                last_t, last_cpu = now, cpu
        return out

    def percent(self, producers_cpu: float) -> dict[str, float]:
        wall = time.time() - self.began
        now = self.read()
        out = {k: round(100 * (now[k] - self.start[k]) / wall, 1) for k in now}
        out["producers"] = round(100 * producers_cpu / wall, 1)
        return out


def stop(workers: list[subprocess.Popen[bytes]]) -> float:
    """SIGTERM the workers (they flush and commit); their summed peak RSS (MB) read just before."""
    peak = sum(_rss_tree(w.pid)[1] for w in workers)
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(60)
        except subprocess.TimeoutExpired:
            w.kill()
    return peak


def kafka_settings(pairs: list[str]) -> dict[str, Any]:
    """``--kafka KEY=VALUE`` pairs as librdkafka settings (numbers as numbers, true/false as booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        elif raw.lstrip("-").isdigit():
            value = int(raw)
        out[key.strip()] = value
    return out


def topic_settings(pairs: list[str]) -> dict[str, str]:
    """``--topic-config KEY=VALUE`` pairs (topic settings such as ``retention.ms``, as strings)."""
    return {k.strip(): v for k, _, v in (p.partition("=") for p in pairs)}


def run_bare(args: argparse.Namespace, broker: Broker, rate: float, workdir: Path) -> dict[str, Any]:
    """Bare consumers (no processing) and the same producers: the broker's and librdkafka's floor."""
    kafka = kafka_settings(args.kafka)
    setup = Setup.create(workdir, broker, args.partitions, kafka, topic_settings(args.topic_config))
    after = time.time() + args.settle + args.warmup
    workers = setup.start_workers("bare", args.processes, kafka, after)
    time.sleep(args.settle)
    meter = CpuMeter(broker.pid, [w.pid for w in workers])
    producers = setup.start_producers(args, rate)
    broker_windows = meter.broker_windows(producers)
    published = Published.collect(producers)
    cpu = meter.percent(published.cpu)
    time.sleep(1.0)  # the last messages reach the consumers
    stop(workers)
    rows = [json.loads((setup.repo / f"bare{i}.json").read_text()) for i in range(args.processes)]
    setup.cleanup("bare")
    return {"workload": "W5-bare", "engine": "bare", "broker": broker.name, "processes": args.processes,
            "partitions": args.partitions,
            "offered_rate": rate, "duration_s": args.duration, "kafka": kafka, "published": published.sent,
            "achieved_rate": round(published.sent / published.wall, 1) if published.wall else 0.0,
            "consumed": sum(r["consumed"] for r in rows), "per_process": rows, "cpu_pct_of_one_core": cpu,
            **published.ack_latency(),
            "broker_cpu_pct_per_10s": broker_windows,
            "nproc": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}  # fmt: skip


def run_once(args: argparse.Namespace, broker: Broker, rate: float, workdir: Path) -> dict[str, Any]:
    """Stream processes, producers and the observer for one offered ``rate``; the result row."""
    if args.engine == "bare":
        return run_bare(args, broker, rate, workdir)
    setup = Setup.create(
        workdir, broker, args.partitions, kafka_settings(args.kafka), topic_settings(args.topic_config)
    )
    workers = setup.start_workers(args.engine, args.processes)
    time.sleep(args.settle)  # consumers join the group and get their partitions
    codes = [ENTITY_FORMAT.format(i) for i in range(args.entities)]
    sample = random.Random(7).sample(codes, min(args.sample, len(codes)))
    reader = Reader(args.engine, setup.repo, setup.prefix)
    obs = Observation()
    stop_observing = threading.Event()
    after = time.time() + args.warmup
    watcher = threading.Thread(target=observe, args=(reader, sample, stop_observing, after, obs), daemon=True)
    meter = CpuMeter(broker.pid, [w.pid for w in workers])
    producers = setup.start_producers(args, rate)
    watcher.start()
    rss_samples: list[float] = []
    broker_windows: list[float] = []
    last = (time.time(), cpu_seconds([broker.pid]) if broker.pid else 0.0)
    while any(p.poll() is None for p, _ in producers):
        rss_samples.append(sum(_rss_tree(w.pid)[0] for w in workers))
        time.sleep(0.5)
        if broker.pid and time.time() - last[0] >= 10:
            now = (time.time(), cpu_seconds([broker.pid]))
            broker_windows.append(round(100 * (now[1] - last[1]) / (now[0] - last[0]), 1))
            last = now
    published = Published.collect(producers)
    cpu = meter.percent(published.cpu)
    if args.engine == "ladle":
        drained_in, counted = drain(reader, codes, published.sent, args.drain)
    else:
        drained_in = caught_up(reader, sample, time.time() - 2.0 * args.entities / rate, args.drain)
    stop_observing.set()
    watcher.join()
    internal = internal_latency(setup.metrics_ports)
    peak = stop(workers)
    result: dict[str, Any] = {
        "workload": "W5",
        "engine": args.engine,
        "broker": broker.name,
        "processes": args.processes,
        "partitions": args.partitions,
        "producers": args.producers,
        "entities": args.entities,
        "offered_rate": rate,
        "duration_s": args.duration,
        "published": published.sent,
        "undelivered": published.undelivered,
        "achieved_rate": round(published.sent / published.wall, 1) if published.wall else 0.0,
        "latency_samples": len(obs.latencies),
        "p50_ms": round(percentile(obs.latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(obs.latencies, 99) * 1000, 1),
        "max_ms": round(max(obs.latencies, default=float("nan")) * 1000, 1),
        **by_window(obs.sent, obs.latencies, after),
        **internal,
        "observer_polls": obs.polls,
        "observer_read_p50_ms": round(percentile(obs.reads, 50) * 1000, 2),
        "observer_cycle_ms": round(1000 * obs.span / max(obs.polls, 1), 2),
        **published.ack_latency(),
        "stream_rss_mb_max_sampled": round(max(rss_samples, default=0.0), 1),
        "stream_peak_rss_mb": round(peak, 1),
        "cpu_pct_of_one_core": cpu,
        "broker_cpu_pct_per_10s": broker_windows,
        "nproc": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    result["drained_in_s"] = None if drained_in is None else round(drained_in, 1)
    if args.engine == "ladle":
        result["lost"] = sum(max(published.counts.get(c, 0) - counted.get(c, 0), 0) for c in codes)
        result["counted_twice"] = sum(max(counted.get(c, 0) - published.counts.get(c, 0), 0) for c in codes)
        result["offline_rows"] = _offline_rows(setup.repo)
    else:
        import redis

        # every entity got events: each must have its hash (the app keeps no count to compare)
        result["keys_written"] = sum(1 for _ in redis.Redis.from_url(f"redis://{REDIS}").scan_iter(f"{setup.prefix}*"))
    setup.cleanup(args.engine)
    return result


def by_window(
    sent: Sequence[float], latencies: Sequence[float], began: float, window: float = 10.0
) -> dict[str, list[float]]:
    """p50 and p99 (ms) of the latencies of the events published in each ``window`` seconds after
    ``began``: shows whether the latency drifts over a run (the broker's CPU does)."""
    groups: dict[int, list[float]] = {}
    for s, lat in zip(sent, latencies, strict=True):
        groups.setdefault(int((s - began) // window), []).append(lat)
    keys = sorted(groups)
    return {f"p{q}_ms_per_{window:g}s": [round(percentile(groups[k], q) * 1000, 1) for k in keys] for q in (50, 99)}


def _offline_rows(repo: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in (repo / "offline" / "ticks").glob("*.parquet"))


def sustainable(row: dict[str, Any], max_p99_ms: float) -> bool:
    """Every event counted in time, p99 within bound, and the producers kept the offered rate."""
    kept_up = row["achieved_rate"] >= 0.95 * row["offered_rate"]
    drained = row.get("drained_in_s") is not None
    return bool(kept_up and drained and row["p99_ms"] <= max_p99_ms)


# -- REST /push, one client -------------------------------------------------------------------------


def push_rate(args: argparse.Namespace, servers: str, workdir: Path) -> dict[str, Any]:
    """Rows/s that ``POST /push`` accepts from one client sending ``--push-rows``-row batches."""
    from bench.w3_server import Server

    run = uuid.uuid4().hex[:8]
    repo = workdir / f"push-{run}"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        f"project: w5p_{run}\nregistry:\n  path: registry.db\n  cache_ttl_seconds: 60\n"
        f"online_store:\n  type: redis\n  connection_string: {REDIS}\noffline_store:\n  type: duckdb\n"
    )
    (repo / "w5.py").write_text(_REPO_FILE.format(servers=servers, topic=f"w5-{run}", view=VIEW))
    ladle = [sys.executable, "-m", "ladle", "-c", str(repo)]
    subprocess.run([*ladle, "apply", "--skip-source-validation"], check=True, capture_output=True)
    server = Server(repo, workers=1)
    rows = requests = 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
        began = time.time()
        while time.time() - began < args.duration:
            now = time.time()
            n = args.push_rows
            codes = [ENTITY_FORMAT.format((rows + i) % args.entities) for i in range(n)]
            body = {"push_source_name": "w5_push", "to": "online",
                    "df": {"commodity_code": codes, "event_timestamp": [now] * n, "current_price": [100.0] * n,
                           "volume_24h": [1.0] * n}}  # fmt: skip
            conn.request("POST", "/push", json.dumps(body), {"Content-Type": "application/json"})
            reply = conn.getresponse()
            text = reply.read()
            if reply.status != 200:
                raise RuntimeError(f"/push answered {reply.status}: {text[:300]!r}")
            rows += n
            requests += 1
        wall = time.time() - began
    finally:
        server.stop()
        subprocess.run([*ladle, "teardown"], capture_output=True, check=False)
    return {"workload": "W5-push", "client": "one HTTP/1.1 keep-alive connection", "rows_per_request": args.push_rows,
            "requests": requests, "rows": rows, "rows_per_s": round(rows / wall, 1), "server_workers": 1,
            "nproc": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}  # fmt: skip


# -- main -------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.w5_stream", description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=["ladle", "quix", "bare"], default="ladle")
    p.add_argument("--rate", type=float, default=10_000.0, help="offered events/s in total (default 10,000)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of publishing per run (default 60)")
    p.add_argument("--entities", type=int, default=10_000)
    p.add_argument("--processes", type=int, default=1, help="stream processes in the consumer group")
    p.add_argument("--producers", type=int, default=1, help="producer processes")
    p.add_argument("--linger-ms", type=float, default=1.0, help="the producers' linger.ms (default 1)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--sample", type=int, default=50, help="entities the observer polls")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of publishing left out of the latencies")
    p.add_argument("--settle", type=float, default=5.0, help="seconds for the consumers to join before publishing")
    p.add_argument("--drain", type=float, default=60.0, help="seconds to wait for every event to be counted")
    p.add_argument("--find-max", action="store_true", help="step the rate up (x1.5) until it is not sustained")
    p.add_argument("--max-p99-ms", type=float, default=2000.0, help="--find-max: highest p99 that counts as kept up")
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--push", action="store_true", help="measure REST /push rows/s from one client instead")
    p.add_argument("--push-rows", type=int, default=1000)
    p.add_argument("--broker", choices=["tansu", "mock"], default="tansu",
                   help="the local broker: Tansu (LocalBroker) or librdkafka's mock cluster (MockBroker)")  # fmt: skip
    p.add_argument("--servers", help="an existing broker instead of a local one")
    p.add_argument("--kafka", action="append", default=[], metavar="KEY=VALUE",
                   help="librdkafka consumer setting for ladle stream / the bare consumer (repeatable)")  # fmt: skip
    p.add_argument("--topic-config", action="append", default=[], metavar="KEY=VALUE",
                   help="setting of the run's topic, e.g. retention.ms=10000 (repeatable)")  # fmt: skip
    # child roles
    p.add_argument("--role", choices=["main", "producer", "quix", "bare"], default="main", help=argparse.SUPPRESS)
    p.add_argument("--kafka-json", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--after", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--group", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--state-dir", help=argparse.SUPPRESS)
    p.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.role == "producer":
        produce(
            args.servers, args.topic, args.rate, args.duration, args.entities, args.part, args.parts, args.linger_ms
        )
        return
    if args.role == "bare":
        bare_consumer(args.servers, args.topic, args.group, json.loads(args.kafka_json), args.after, args.prefix)
        return
    if args.role == "quix":
        quix_app(args.servers, args.topic, args.group, args.prefix, args.state_dir)
        return
    from ladle.streaming.broker import LocalBroker
    from ladle.streaming.mockbroker import MockBroker

    workdir = Path(tempfile.mkdtemp(prefix="w5-"))
    local: LocalBroker | MockBroker | None = None
    if args.servers:
        broker = Broker("external", args.servers)
    else:
        local = (MockBroker() if args.broker == "mock" else LocalBroker()).start()
        broker = Broker(args.broker, local.bootstrap_servers, local.pid, local if args.broker == "mock" else None)
    try:
        if args.push:
            emit(push_rate(args, broker.servers, workdir))
            return
        if not args.find_max:
            emit(run_once(args, broker, args.rate, workdir))
            return
        rate, best = args.rate, None
        for _ in range(args.max_steps):
            row = run_once(args, broker, rate, workdir)
            row["sustained"] = sustainable(row, args.max_p99_ms)
            emit(row)
            if not row["sustained"]:
                break
            best = rate
            rate = round(rate * 1.5)
        emit({"workload": "W5-max", "engine": args.engine, "broker": broker.name, "processes": args.processes,
              "highest_sustained_rate": best, "criterion": f"producers >= 95% of offered, every event counted "
              f"within --drain {args.drain:g} s, p99 <= {args.max_p99_ms:g} ms"})  # fmt: skip
    finally:
        if local is not None:
            local.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
