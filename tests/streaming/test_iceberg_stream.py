"""``ladle stream`` with its batch source on Iceberg, through the real broker.

The repo of :mod:`streaming.stream_repo` with ``offline_store: {type: iceberg}`` (a SQLite or a
PostgreSQL catalog, a file warehouse): the Kafka source's batch source is a named ``FileSource``
(the table ``stream.ticks_history``) or an ``IcebergSource``. After kill -9 mid-stream and
restarts, the table holds every accepted event exactly once, the online rows equal the
reference's, and they equal the batch computation (``ladle.aggregation.batch.compute``) over the
table's rows.
"""

from __future__ import annotations

import json
import random
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from ladle import FeatureStore, StreamFeatureView
from ladle.aggregation.batch import compute
from ladle.definitions import KafkaSource
from ladle.offline.iceberg.catalog import Catalogs, IcebergOfflineStoreConfig, table_ref
from ladle.offline.iceberg.tables import load_table
from ladle.streaming.iceberg_log import OFFSETS_PROPERTY, SOURCE_PROPERTY, TOPIC_PROPERTY
from streaming.reference import close, expected
from streaming.stream_repo import (
    DEFS,
    DELAY_S,
    FAST_GROUP,
    JSON_FORMAT,
    Event,
    arrivals,
    assert_online_matches,
    create_topic,
    ends_of,
    kill_twice_while_feeding,
    online_state,
    produce,
    random_events,
    running,
    unique,
    wait_committed,
    wait_progress,
)

FILE_BATCH = 'FileSource(name="ticks_history", path="data/offline/ticks/", timestamp_field="event_timestamp")'
ICEBERG_BATCH = 'IcebergSource(table="lake.ticks", timestamp_field="event_timestamp")'


def make_iceberg_repo(
    root: Path, bootstrap: str, topic: str, batch: str, catalog_uri: str, stream: dict[str, Any] | None = None
) -> Path:
    """The stream test repo on the Iceberg offline store; applied."""
    root.mkdir(parents=True, exist_ok=True)
    defs = DEFS.format(bootstrap=bootstrap, topic=topic, delay=DELAY_S, fmt=JSON_FORMAT)
    plain = 'batch_source=FileSource(path="data/offline/ticks/", timestamp_field="event_timestamp")'
    assert plain in defs
    defs = defs.replace(plain, f"batch_source={batch}").replace("AvroFormat,", "AvroFormat, IcebergSource,")
    (root / "defs.py").write_text(textwrap.dedent(defs))
    config = {
        "project": "icestream",
        "registry": "data/registry.db",
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {
            "type": "iceberg",
            "catalog": {"type": "sql", "uri": catalog_uri, "warehouse": "data/iceberg/warehouse"},
            "catalog_name": unique("cat").replace("-", "_"),
            "namespace": "stream",
        },
        "stream": {"kafka": dict(FAST_GROUP), "offline_flush_seconds": 0.3, "metrics_port": 0, **(stream or {})},
    }
    (root / "feature_store.yaml").write_text(yaml.safe_dump(config))
    from ladle.repo.loader import load_repo

    store = FeatureStore(repo_path=root)
    store.apply(load_repo(root), partial=False, skip_source_validation=True)
    store.close()
    return root


def iceberg_table(repo: Path) -> Any:
    """The pyiceberg table backing the repo's Kafka source."""
    store = FeatureStore(repo_path=repo)
    try:
        block = store.config.offline_store
        assert isinstance(block, IcebergOfflineStoreConfig)
        source = store.snapshot(allow_cache=False).feature_view("ticks_raw").source
        assert isinstance(source, KafkaSource)
        ref = table_ref(source, block)
        table = load_table(Catalogs(block, store.repo_path).get(ref.catalog), ref)
        assert table is not None, f"no table {ref}"
        return table
    finally:
        store.close()


def assert_table_matches(repo: Path, events: Sequence[Event]) -> pa.Table:
    """The table holds each accepted event exactly once (by partition and offset) with its values;
    returns its rows."""
    store = FeatureStore(repo_path=repo)
    try:
        view = store.snapshot(allow_cache=False).feature_view("ticks_raw")
        assert isinstance(view, StreamFeatureView)
    finally:
        store.close()
    exp = expected(view, arrivals(events))
    rows = iceberg_table(repo).scan().to_arrow()
    got = list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist(), strict=True))
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} events are in the table twice"
    want = {(a.partition, a.offset): a.row for a in exp.accepted}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, f"missing from the table {missing[:5]}, not accepted {extra[:5]}"
    times = rows["event_timestamp"].cast(pa.int64()).to_pylist()
    for (p, o), t, price, volume in zip(got, times, rows["price"].to_pylist(), rows["volume"].to_pylist(), strict=True):
        assert (t, price, volume) == (want[(p, o)]["event_timestamp"], want[(p, o)]["price"], want[(p, o)]["volume"])
    return rows


def assert_online_equals_batch(repo: Path, rows: pa.Table) -> None:
    """For the views without hopping windows, each key's online row is the newest row the batch
    computation gives over the table's rows."""
    store = FeatureStore(repo_path=repo)
    try:
        snapshot = store.snapshot(allow_cache=False)
        keys = sorted(set(rows["commodity_code"].to_pylist()))
        for name in ("ticks_raw", "ticks_agg"):
            view = snapshot.feature_view(name)
            assert isinstance(view, StreamFeatureView)
            out = compute(view, rows).to_pylist()
            newest: dict[str, dict[str, Any]] = {}
            for r in out:
                if (
                    r["commodity_code"] not in newest
                    or r["event_timestamp"] >= newest[r["commodity_code"]]["event_timestamp"]
                ):
                    newest[r["commodity_code"]] = r
            have = online_state(store, view, keys)
            assert sorted(have) == sorted(newest), name
            for k, r in newest.items():
                t = int(r["event_timestamp"].timestamp() * 1_000_000)
                assert have[k][0] == t, f"{name} {k}: online event time {have[k][0]} != batch {t}"
                for f in view.feature_names:
                    assert close(have[k][1][f], r[f]), f"{name} {k} {f}: online {have[k][1][f]!r} != batch {r[f]!r}"
    finally:
        store.close()


@pytest.mark.slow
def test_kill_9_twice_stores_every_event_once_in_iceberg(kafka: str, tmp_path: Path) -> None:
    rng = random.Random(int(time.time()))
    topic, group = unique("icekill"), unique("g")
    create_topic(kafka, topic, 2)
    fast = {"session.timeout.ms": 3000, "max.poll.interval.ms": 4000, "heartbeat.interval.ms": 300}
    catalog = "sqlite:///data/iceberg/catalog.db"
    repo = make_iceberg_repo(tmp_path / "repo", kafka, topic, FILE_BATCH, catalog,
                             stream={"offline_flush_seconds": 0.3, "kafka": fast})  # fmt: skip
    events = random_events(rng, 4000, partitions=2, keys=5)
    log = tmp_path / "stream.log"
    kill_twice_while_feeding(kafka, repo, topic, group, events, 250, log, rng)
    rows = assert_table_matches(repo, events)
    store = FeatureStore(repo_path=repo)
    try:
        assert_online_matches(store, events)
    finally:
        store.close()
    assert_online_equals_batch(repo, rows)
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count("INFO ladle.streaming.runner: assigned") >= 2


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_uri(request: pytest.FixtureRequest) -> str:
    """A SQLite catalog in the repo, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return "sqlite:///data/iceberg/catalog.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_events_written_but_never_committed_are_deleted_on_assignment(
    kafka: str, tmp_path: Path, catalog_uri: str
) -> None:
    """The crash window between the Iceberg commit and the Kafka commit, made deterministic: a flush
    past the committed offset (here with wrong values) is deleted and its events read again."""
    topic, group = unique("iceuncommitted"), unique("g")
    create_topic(kafka, topic, 1)
    repo = make_iceberg_repo(tmp_path / "repo", kafka, topic, ICEBERG_BATCH, catalog_uri)
    events = random_events(random.Random(5), 400, partitions=1, keys=3)
    first, rest = events[:250], events[250:]
    store = FeatureStore(repo_path=repo)
    with running(store, group_id=group):
        produce(kafka, topic, first)
        wait_committed(kafka, group, topic, ends_of(first, 1))
    produce(kafka, topic, rest)
    table = iceberg_table(repo)
    appends = [s for s in table.snapshots() if OFFSETS_PROPERTY in s.summary.additional_properties]
    assert appends, "the stream's appends record their offsets"
    recorded = [json.loads(s.summary[OFFSETS_PROPERTY])["0"] for s in appends]
    assert recorded == sorted(recorded) and recorded[-1][1] < rest[0].offset
    stale = table.scan().to_arrow().slice(0, 5)  # copies of committed events, posing as the next offsets
    offsets = pa.array(range(rest[0].offset, rest[0].offset + 5), pa.int64())
    stale = stale.set_column(stale.column_names.index("_kafka_offset"), "_kafka_offset", offsets)
    # as the crashed process's flush would have: with its offsets in the snapshot summary
    summary = {SOURCE_PROPERTY: "ticks", TOPIC_PROPERTY: topic,
               OFFSETS_PROPERTY: json.dumps({"0": [rest[0].offset, rest[0].offset + 4]})}  # fmt: skip
    table.append(stale, snapshot_properties=summary)
    with running(store, group_id=group):
        wait_committed(kafka, group, topic, ends_of(events, 1))
    store.close()
    rows = assert_table_matches(repo, events)
    store = FeatureStore(repo_path=repo)
    try:
        assert_online_matches(store, events)
    finally:
        store.close()
    assert_online_equals_batch(repo, rows)


@pytest.mark.slow
def test_two_processes_append_to_one_table_while_partitions_move(kafka: str, tmp_path: Path) -> None:
    """A second process joins mid-stream, then the first leaves: both commit to the same table
    meanwhile (pyiceberg retries a commit that lost the race), and every event is in it once."""
    topic, group = unique("icerebal"), unique("g")
    create_topic(kafka, topic, 4)
    repo = make_iceberg_repo(tmp_path / "repo", kafka, topic, FILE_BATCH, "sqlite:///data/iceberg/catalog.db",
                             stream={"offline_flush_seconds": 0.2})  # fmt: skip
    events = random_events(random.Random(12), 4000, partitions=4, keys=3)
    chunks = [events[i : i + 400] for i in range(0, len(events), 400)]

    def feed() -> None:
        for chunk in chunks:
            produce(kafka, topic, chunk)
            time.sleep(0.3)

    first, second = FeatureStore(repo_path=repo), FeatureStore(repo_path=repo)
    producer = threading.Thread(target=feed)
    with running(first, group_id=group) as a:
        producer.start()
        done = wait_progress(kafka, group, topic, 4, 0)
        with running(second, group_id=group) as b:
            deadline = time.monotonic() + 30
            while not (a.runner.assignment() and b.runner.assignment()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert a.runner.assignment() and b.runner.assignment(), "both processes hold partitions"
            wait_progress(kafka, group, topic, 4, done)
            a.stop()
            producer.join(60)
            wait_committed(kafka, group, topic, ends_of(events, 4), timeout=60)
    first.close()
    second.close()
    rows = assert_table_matches(repo, events)
    store = FeatureStore(repo_path=repo)
    try:
        assert_online_matches(store, events)
    finally:
        store.close()
    assert_online_equals_batch(repo, rows)
