"""A small feature repo with stream views over one Kafka topic, and helpers to drive it through the
real broker: produce events, wait for commits, read the online store, the files and the dead letters.

The views (all over ``ticks``, a JSON topic keyed by ``commodity_code``, watermark delay 5 s):

* ``ticks_raw``: no aggregations (rule 8), features ``price`` and ``volume``;
* ``ticks_agg``: continuous windows (rule 5): last/mean/count/sum/max over 1 to 10 minutes;
* ``ticks_hop``: hopping windows (rule 6) of 2 minutes sliding every 30 s.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ladle import FeatureStore, StreamFeatureView
from ladle.online.base import ReadRequest
from ladle.streaming.process import StreamProcess
from streaming.reference import Arrival, Expected, close, expected

BASE_US = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp()) * 1_000_000
DELAY_S = 5
FAST_GROUP = {"session.timeout.ms": 6000, "max.poll.interval.ms": 6000, "heartbeat.interval.ms": 500}

DEFS = """
from datetime import timedelta

from ladle import (
    Aggregation, AvroFormat, Entity, Field, FileSource, Float64, JsonFormat, KafkaSource, StreamFeatureView, String,
)

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=String)

ticks = KafkaSource(
    name="ticks",
    kafka_bootstrap_servers="{bootstrap}",
    topic="{topic}",
    timestamp_field="event_timestamp",
    message_format={fmt},
    batch_source=FileSource(path="data/offline/ticks/", timestamp_field="event_timestamp"),
    watermark_delay_threshold=timedelta(seconds={delay}),
)

ticks_raw = StreamFeatureView(
    name="ticks_raw", source=ticks, entities=[commodity],
    schema=[Field(name="commodity_code", dtype=String), Field(name="price", dtype=Float64),
            Field(name="volume", dtype=Float64)],
)

ticks_agg = StreamFeatureView(
    name="ticks_agg", source=ticks, entities=[commodity],
    aggregations=[
        Aggregation(column="price", function="last", time_window=timedelta(minutes=10), name="last_price"),
        Aggregation(column="price", function="mean", time_window=timedelta(minutes=1), name="mean_1m"),
        Aggregation(column="volume", function="sum", time_window=timedelta(minutes=5), name="volume_5m"),
        Aggregation(column="volume", function="count", time_window=timedelta(minutes=5), name="n_5m"),
        Aggregation(column="price", function="max", time_window=timedelta(minutes=2), name="max_2m"),
    ],
)

ticks_hop = StreamFeatureView(
    name="ticks_hop", source=ticks, entities=[commodity],
    aggregations=[
        Aggregation(column="volume", function="sum", time_window=timedelta(minutes=2),
                    slide_interval=timedelta(seconds=30), name="volume_2m"),
        Aggregation(column="price", function="min", time_window=timedelta(seconds=30),
                    slide_interval=timedelta(seconds=30), name="min_30s"),
    ],
)
"""


JSON_FORMAT = 'JsonFormat("commodity_code string, event_timestamp timestamp, price double, volume double")'
AVRO_SCHEMA = {
    "type": "record",
    "name": "Tick",
    "fields": [
        {"name": "commodity_code", "type": "string"},
        {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "price", "type": ["null", "double"]},
        {"name": "volume", "type": ["null", "double"]},
    ],
}


def make_repo(
    root: Path,
    bootstrap: str,
    topic: str,
    online: dict[str, Any] | None = None,
    stream: dict[str, Any] | None = None,
    avro: bool = False,
    project: str = "streamtest",
) -> Path:
    """Write the repo under ``root`` and apply it; returns the repo directory."""
    import json

    import yaml

    root.mkdir(parents=True, exist_ok=True)
    fmt = f"AvroFormat({json.dumps(json.dumps(AVRO_SCHEMA))})" if avro else JSON_FORMAT
    defs = DEFS.format(bootstrap=bootstrap, topic=topic, delay=DELAY_S, fmt=fmt)
    (root / "defs.py").write_text(textwrap.dedent(defs))
    config = {
        "project": project,
        "registry": "data/registry.db",
        "online_store": online or {"type": "sqlite", "path": "data/online.db"},
        "stream": {"kafka": dict(FAST_GROUP), "offline_flush_seconds": 0.3, "metrics_port": 0, **(stream or {})},
    }
    (root / "feature_store.yaml").write_text(yaml.safe_dump(config))
    from ladle.repo.loader import load_repo

    store = FeatureStore(repo_path=root)
    store.apply(load_repo(root), partial=False, skip_source_validation=True)
    store.close()
    return root


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create a topic (and wait until the broker knows it)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(10)


@dataclass
class Event:
    """One produced event: its partition, its message value, and the row it decodes to (None: it does not)."""

    partition: int
    value: bytes
    row: dict[str, Any] | None
    offset: int = -1


def tick(key: str, t_us: int, price: float, volume: float) -> dict[str, Any]:
    """A decoded row (event time in µs)."""
    return {"commodity_code": key, "event_timestamp": t_us, "price": price, "volume": volume}


def message(row: dict[str, Any]) -> bytes:
    """The JSON message of a row (the time as an RFC 3339 string)."""
    stamp = datetime.fromtimestamp(row["event_timestamp"] / 1e6, UTC).isoformat()
    return orjson.dumps({**row, "event_timestamp": stamp})


def avro_message(row: dict[str, Any], framed: bool) -> bytes:
    """The Avro record of a row (timestamp-micros), bare or in Confluent's framing (schema id 1)."""
    import io
    import struct

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf, fastavro.parse_schema(AVRO_SCHEMA), {**row, "event_timestamp": utc(row["event_timestamp"])}
    )
    return (b"\x00" + struct.pack(">I", 1) + buf.getvalue()) if framed else buf.getvalue()


def random_events(
    rng: random.Random, n: int, partitions: int, keys: int, start_us: int = BASE_US, late_share: float = 0.03
) -> list[Event]:
    """Mostly in-order ticks with jitter inside the watermark delay, duplicates, and some late ones."""
    out: list[Event] = []
    clock = {p: start_us for p in range(partitions)}
    for i in range(n):
        p = rng.randrange(partitions)
        key = f"k{p}_{rng.randrange(keys)}"  # keys stay in one partition, as Kafka's key partitioning does
        clock[p] += rng.randrange(50_000, 400_000)
        roll = rng.random()
        if roll < late_share:
            t = clock[p] - rng.randrange(DELAY_S + 2, DELAY_S + 60) * 1_000_000
        elif roll < 0.25:
            t = clock[p] - rng.randrange(0, DELAY_S * 1_000_000)
        else:
            t = clock[p]
        t -= t % 1000  # whole milliseconds: exact through RFC 3339
        if roll > 0.97 and out:  # a duplicate of an earlier event of this partition (same key and time)
            earlier = [e for e in out if e.partition == p and e.row is not None]
            if earlier:
                prev = rng.choice(earlier).row
                assert prev is not None
                t, key = prev["event_timestamp"], prev["commodity_code"]
        row = tick(key, t, round(rng.uniform(10, 20), 3), float(rng.randrange(1, 100)))
        out.append(Event(p, message(row), row))
        del i
    return out


def produce(bootstrap: str, topic: str, events: Sequence[Event]) -> None:
    """Produce events to their partitions, in order, and record each one's offset."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "enable.idempotence": True})
    for i, e in enumerate(events):

        def done(err: Any, msg: Any, event: Event = e) -> None:
            assert err is None, err
            event.offset = msg.offset()

        producer.produce(topic, value=e.value, key=None if e.row is None else e.row["commodity_code"].encode(),
                         partition=e.partition, on_delivery=done)  # fmt: skip
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    assert all(e.offset >= 0 for e in events)


def arrivals(events: Sequence[Event]) -> list[Arrival]:
    """The decodable events in the order each partition received them (rule 2 is per partition)."""
    ok = [e for e in events if e.row is not None]
    return [Arrival(e.partition, e.offset, dict(e.row)) for e in sorted(ok, key=lambda e: (e.offset, e.partition))]  # type: ignore[arg-type]


def wait_committed(bootstrap: str, group: str, topic: str, ends: dict[int, int], timeout: float = 60) -> None:
    """Wait until the group committed ``ends[p]`` (the next offset) on every partition."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        parts = [TopicPartition(topic, p) for p in sorted(ends)]
        seen: dict[int, int] = {}
        while time.monotonic() < deadline:
            seen = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=5)}
            if all(seen[p] >= ends[p] for p in ends):
                return
            time.sleep(0.1)
        raise AssertionError(f"group {group} committed {seen}, expected {ends}")
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """Partition → the group's committed offset (-1001 when none)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=5)}
    finally:
        consumer.close()


def wait_progress(bootstrap: str, group: str, topic: str, partitions: int, beyond: int, timeout: float = 60) -> int:
    """Wait until the group's committed offsets sum past ``beyond``; returns the new sum."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = sum(max(o, 0) for o in committed(bootstrap, group, topic, partitions).values())
        if total > beyond:
            return total
        time.sleep(0.1)
    raise AssertionError(f"group {group} committed nothing past {beyond} in {timeout:.0f} s")


def ends_of(events: Sequence[Event], partitions: int) -> dict[int, int]:
    """Partition → the offset after its last produced event."""
    out = dict.fromkeys(range(partitions), 0)
    for e in events:
        out[e.partition] = max(out[e.partition], e.offset + 1)
    return out


def offline_rows(repo: Path) -> pa.Table:
    """Every row of the stream's files (the batch source directory)."""
    files = sorted((repo / "data/offline/ticks").glob("*.parquet"))
    if not files:
        return pa.table({})
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def online_state(store: FeatureStore, view: StreamFeatureView, keys: Sequence[str]) -> dict[str, tuple[int, dict]]:
    """Key → (event time µs, feature values) as the online store holds them (no ttl applied)."""
    result = store.online_store.read(
        store.project, [ReadRequest(view, view.feature_names, {"commodity_code": list(keys)})]
    )[0]
    out = {}
    for i, key in enumerate(keys):
        ts = result.event_ts[i]
        if ts is not None:
            out[key] = (ts, {f: result.values[f][i] for f in view.feature_names})
    return out


def expected_online(view: StreamFeatureView, exp: Expected) -> dict[str, tuple[int, dict]]:
    """Key → the reference row the online store must hold: the newest event time per key; for a
    hopping view, the newest window end the partition's final watermark has passed (rule 6)."""
    out: dict[str, tuple[int, dict]] = {}
    partition_of = {a.row["commodity_code"]: a.partition for a in exp.accepted}
    for (key, t), values in exp.rows.items():
        k = key[0]
        if view.slide_interval is not None:
            wm = exp.watermarks.get(partition_of[k])
            if wm is None or not wm > t:
                continue
        if k not in out or t > out[k][0]:
            out[k] = (t, values)
    return out


def assert_online_matches(store: FeatureStore, events: Sequence[Event]) -> None:
    """Every view's online rows equal the reference's, key by key."""
    snapshot = store.snapshot(allow_cache=False)
    found = arrivals(events)
    keys = sorted({a.row["commodity_code"] for a in found})
    for name in ("ticks_raw", "ticks_agg", "ticks_hop"):
        view = snapshot.feature_view(name)
        assert isinstance(view, StreamFeatureView)
        want = expected_online(view, expected(view, found))
        have = online_state(store, view, keys)
        assert sorted(have) == sorted(want), f"{name}: keys online {sorted(have)} != expected {sorted(want)}"
        for k, (t, values) in want.items():
            assert have[k][0] == t, f"{name} {k}: online event time {have[k][0]} != {t}"
            for f, v in values.items():
                assert close(have[k][1][f], v), f"{name} {k} {f}: online {have[k][1][f]!r} != reference {v!r}"


def assert_offline_matches(repo: Path, events: Sequence[Event]) -> None:
    """The files hold each accepted event exactly once (by partition and offset), with its values."""
    view_like = make_reference_view(repo)
    exp = expected(view_like, arrivals(events))
    table = offline_rows(repo)
    got = list(zip(table["_kafka_partition"].to_pylist(), table["_kafka_offset"].to_pylist(), strict=True))
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} events are in the files twice"
    want = {(a.partition, a.offset): a.row for a in exp.accepted}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, f"missing from files {missing[:5]}, not accepted {extra[:5]}"
    times = table["event_timestamp"].cast(pa.int64()).to_pylist()
    prices = table["price"].to_pylist()
    for (p, o), t, price in zip(got, times, prices, strict=True):
        assert (t, price) == (want[(p, o)]["event_timestamp"], want[(p, o)]["price"])


def make_reference_view(repo: Path) -> StreamFeatureView:
    """The raw view of the repo (its source's watermark decides acceptance)."""
    store = FeatureStore(repo_path=repo)
    try:
        view = store.snapshot(allow_cache=False).feature_view("ticks_raw")
        assert isinstance(view, StreamFeatureView)
        return view
    finally:
        store.close()


def late_positions(repo: Path, events: Sequence[Event]) -> set[tuple[int, int]]:
    """(partition, offset) of the events the reference calls late."""
    exp = expected(make_reference_view(repo), arrivals(events))
    return {(a.partition, a.offset) for a in exp.late}


def read_dead_letters(bootstrap: str, topic: str, at_least: int, timeout: float = 30) -> list[dict[str, Any]]:
    """Every message of a dead-letter topic (partitions assigned directly: no group), as dicts."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.2)
            for m in batch:
                if m.error() is None:
                    headers = {k: v.decode() for k, v in (m.headers() or [])}
                    out.append({"key": m.key(), "value": m.value(), "headers": headers})
            if len(out) >= at_least:
                quiet_until = quiet_until or time.monotonic() + 1.0  # a moment more for stragglers
                if time.monotonic() >= quiet_until:
                    break
        return out
    finally:
        consumer.close()


@contextmanager
def running(store: FeatureStore, **kw: Any) -> Iterator[StreamProcess]:
    """A stream process on a thread; stopped (flush, commit) on exit, re-raising what it raised."""
    process = StreamProcess.open(store, **kw)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            process.run()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="stream-under-test")
    thread.start()
    try:
        yield process
    finally:
        process.stop()
        thread.join(60)
        assert not thread.is_alive(), "the stream process did not stop"
    if errors:
        raise errors[0]


def unique(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{time.time_ns() % 10**12:x}-{random.randrange(1 << 16):x}"


def utc(us: int) -> datetime:
    """µs → datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def start_stream(repo: Path, group: str, log: Path) -> subprocess.Popen[bytes]:
    """``ladle stream`` as a child process, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ladle", "-c", str(repo), "--log-level", "INFO", "stream", "--group-id", group],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def kill_twice_while_feeding(
    kafka: str,
    repo: Path,
    topic: str,
    group: str,
    events: Sequence[Event],
    chunk: int,
    log: Path,
    rng: random.Random,
    assignments_before_stop: int = 0,
) -> None:
    """Publish ``events`` in chunks (one every 0.4 s) to the topic's 2 partitions while ``ladle stream``
    is killed with SIGKILL twice, each time at a random moment after the process committed something
    of its own, and restarted; then wait until every event is committed and stop the last process
    with SIGTERM (it must exit 0) once it runs: its own partition assignment is in the log (a SIGTERM
    while it still imports would kill it before it installs its handler: the exit code would be
    -15, a race of the test, not of the stream). ``assignments_before_stop``: also wait (up to 15 s)
    until the log shows that many partition assignments in all."""
    chunks = [events[i : i + chunk] for i in range(0, len(events), chunk)]

    def feed() -> None:
        for part in chunks:
            produce(kafka, topic, part)
            time.sleep(0.4)

    proc = start_stream(repo, group, log)
    producer = threading.Thread(target=feed)
    producer.start()
    started_at = 0  # where the log of the process running now begins
    try:
        done = 0
        for _ in range(2):
            done = wait_progress(kafka, group, topic, 2, done)
            time.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
            started_at = len(log.read_text())
            proc = start_stream(repo, group, log)
        producer.join(60)
        wait_committed(kafka, group, topic, ends_of(events, 2), timeout=90)
        deadline = time.monotonic() + 60
        while "INFO ladle.streaming.runner: assigned" not in log.read_text()[started_at:]:
            assert proc.poll() is None, f"exit code {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the last stream process was never assigned its partitions"
            time.sleep(0.1)
        deadline = time.monotonic() + 15
        while (
            log.read_text().count("INFO ladle.streaming.runner: assigned") < assignments_before_stop
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        assert code == 0, f"exit code {code}:\n{log.read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        producer.join(60)
