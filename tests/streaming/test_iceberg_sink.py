"""The stream's Iceberg sink against a real SQLite catalog and file warehouse, without Kafka.

Random sequences of flushes, truncations (the assignment after a crash) and restores are checked
against a brute-force model: a plain list of the rows that must be in the table.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ladle import FeatureStore, FileSource, IcebergSource, JsonFormat, KafkaSource
from ladle.errors import ConfigError, DataSourceError
from ladle.offline.iceberg.catalog import Catalogs, IcebergOfflineStoreConfig, TableRef
from ladle.offline.iceberg.tables import load_table
from ladle.streaming.iceberg_log import OFFSETS_PROPERTY, TOPIC_PROPERTY, IcebergLog

US = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("commodity_code", pa.string()),
        ("event_timestamp", US),
        ("price", pa.float64()),
        ("_kafka_partition", pa.int32()),
        ("_kafka_offset", pa.int64()),
    ]
)
BASE = 1_709_251_200_000_000  # 2024-03-01 UTC, µs
HOUR = 3_600_000_000


def kafka_source(batch: FileSource | IcebergSource, mapping: bool = False) -> KafkaSource:
    """A Kafka source over ``batch`` (the message format is never used here)."""
    return KafkaSource(
        name="ticks",
        kafka_bootstrap_servers="127.0.0.1:1",
        topic="ticks-topic",
        timestamp_field="event_timestamp",
        message_format=JsonFormat("commodity_code string, event_timestamp timestamp, price double"),
        batch_source=batch,
        watermark_delay_threshold=timedelta(seconds=5),
    )


def events(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def model_recent(model: list[dict], partition: int, lookback: int) -> list[int]:
    """The offsets read_recent must return, computed from the model by brute force."""
    mine = [r for r in model if r["_kafka_partition"] == partition]
    if not mine:
        return []
    top = max(r["event_timestamp"] for r in mine)
    return sorted(r["_kafka_offset"] for r in mine if r["event_timestamp"] >= top - lookback)


def table_rows(log: IcebergLog) -> list[tuple]:
    table = load_table(Catalogs(log.block, log.repo_path).get(), log.ref)
    assert table is not None
    data = table.scan().to_arrow()
    return sorted(
        zip(
            data["_kafka_partition"].to_pylist(),
            data["_kafka_offset"].to_pylist(),
            data["commodity_code"].to_pylist(),
            data["event_timestamp"].cast(pa.int64()).to_pylist(),
            data["price"].to_pylist(),
            strict=True,
        ),
        key=repr,
    )


def as_tuples(model: list[dict]) -> list[tuple]:
    return sorted(
        (
            (r["_kafka_partition"], r["_kafka_offset"], r["commodity_code"], r["event_timestamp"], r["price"])
            for r in model
        ),
        key=repr,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_flushes_truncations_and_restores_match_a_brute_force_model(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    block = IcebergOfflineStoreConfig(namespace="stream")
    log = IcebergLog(kafka_source(IcebergSource(table="s.ticks", timestamp_field="event_timestamp")), block, tmp_path,
                     SCHEMA)  # fmt: skip
    log.probe_writable()  # before the table exists: the catalog answers
    assert log.read_recent(0, HOUR) == SCHEMA.empty_table()
    assert log.truncate_from(0, 0) == 0
    model: list[dict] = []
    next_offset = {0: 0, 1: 0, 2: 0}
    clock = {0: BASE, 1: BASE - 30 * 24 * HOUR, 2: BASE + 2 * HOUR}  # partition 1 a month behind the others
    for step in range(24):
        if step and rng.random() < 0.4:  # an assignment after a crash: drop what was never committed
            p = rng.randrange(3)
            # mostly near the end (the last flush was not committed), sometimes anywhere
            near = max(0, next_offset[p] - rng.randrange(0, 4))
            start = near if rng.random() < 0.7 else rng.randrange(0, next_offset[p] + 1)
            removed = log.truncate_from(p, start)
            gone = [r for r in model if r["_kafka_partition"] == p and r["_kafka_offset"] >= start]
            assert removed == len(gone)
            model = [r for r in model if r not in gone]
            next_offset[p] = start
            continue
        batches: dict[int, pa.Table] = {}
        for p in rng.sample(range(3), rng.randrange(1, 4)):
            rows = []
            for _ in range(rng.randrange(1, 30)):
                clock[p] += rng.randrange(0, 90_000_000)
                jitter = rng.randrange(0, 5_000_000)
                rows.append({"commodity_code": f"k{rng.randrange(4)}", "event_timestamp": clock[p] - jitter,
                             "price": round(rng.uniform(1, 9), 3), "_kafka_partition": p,
                             "_kafka_offset": next_offset[p]})  # fmt: skip
                next_offset[p] += rng.choice((1, 1, 1, 2))  # gaps: dead letters are not in the table
            batches[p] = events(rows)
            model.extend(rows)
        before = log._current()
        count = 0 if before is None else len(before.snapshots())
        log.write_all(batches)
        table = log._current()
        assert table is not None and len(table.snapshots()) == count + 1, "one snapshot per flush"
        summary = table.current_snapshot().summary  # type: ignore[union-attr]
        offsets = json.loads(summary[OFFSETS_PROPERTY])
        assert summary[TOPIC_PROPERTY] == "ticks-topic"
        want = {str(p): [t["_kafka_offset"][0].as_py(), t["_kafka_offset"][-1].as_py()] for p, t in batches.items()}
        assert offsets == want
        if step == 0:  # rows from elsewhere (ladle ingest): never deleted nor restored by the stream
            other = {"commodity_code": "x", "event_timestamp": BASE + 9 * HOUR, "price": 1.0,
                     "_kafka_partition": None, "_kafka_offset": None}  # fmt: skip
            table.append(events([other]))
            model.append(other)
        for p in range(3):
            lookback = rng.choice((0, 30_000_000, 10 * 60_000_000, 48 * HOUR))
            got = log.read_recent(p, lookback)
            assert got.schema == SCHEMA
            assert got["_kafka_offset"].to_pylist() == model_recent(
                [r for r in model if r["_kafka_partition"] is not None], p, lookback
            )
    assert table_rows(log) == as_tuples(model)


def test_field_mapping_and_new_columns(tmp_path: Path) -> None:
    """The table keeps the batch source's column names; a column the events add is added to it."""
    block = IcebergOfflineStoreConfig(namespace="stream")
    batch = FileSource(name="ticks_history", path="data/x/", timestamp_field="event_timestamp",
                       field_mapping={"px": "price"})  # fmt: skip
    log = IcebergLog(kafka_source(batch), block, tmp_path, SCHEMA)
    assert log.ref == TableRef("", "stream.ticks_history")
    row = {"commodity_code": "a", "event_timestamp": BASE, "price": 2.5, "_kafka_partition": 0, "_kafka_offset": 0}
    log.write_all({0: events([row])})
    wider = SCHEMA.append(pa.field("volume", pa.float64()))
    log2 = IcebergLog(kafka_source(batch), block, tmp_path, wider)
    log2.write_all({0: pa.Table.from_pylist([{**row, "_kafka_offset": 1, "volume": 7.0}], schema=wider)})
    table = load_table(Catalogs(block, tmp_path).get(), log.ref)
    assert table is not None
    assert table.schema().column_names == [
        "commodity_code", "event_timestamp", "px", "_kafka_partition", "_kafka_offset", "volume"
    ]  # fmt: skip
    back = log2.read_recent(0, HOUR)
    assert back.to_pylist() == [
        {**row, "event_timestamp": back["event_timestamp"][0].as_py(), "volume": None},
        {**row, "_kafka_offset": 1, "event_timestamp": back["event_timestamp"][0].as_py(), "volume": 7.0},
    ]
    assert back["event_timestamp"].cast(pa.int64()).to_pylist() == [BASE, BASE]


def test_readiness_fails_when_the_catalog_does_not_answer(tmp_path: Path) -> None:
    block = IcebergOfflineStoreConfig(
        catalog={"type": "sql", "uri": "postgresql://postgres@127.0.0.1:1/nothing", "warehouse": "wh"}
    )
    log = IcebergLog(kafka_source(IcebergSource(table="s.t", timestamp_field="event_timestamp")), block, tmp_path,
                     SCHEMA)  # fmt: skip
    with pytest.raises(DataSourceError, match=r"iceberg catalog for s\.t is not usable"):
        log.probe_writable()


def write_repo(root: Path, batch: str, offline: str) -> FeatureStore:
    root.mkdir()
    (root / "feature_store.yaml").write_text(
        f"project: sinkpick\nregistry: data/registry.db\nonline_store: {{type: sqlite, path: data/online.db}}\n"
        f"offline_store: {offline}\n"
    )
    (root / "defs.py").write_text(
        "from datetime import timedelta\n"
        "from ladle import Entity, Field, FileSource, Float64, IcebergSource, JsonFormat, KafkaSource, "
        "StreamFeatureView, String\n"
        "c = Entity(name='c', join_keys=['commodity_code'], value_type=String)\n"
        "ticks = KafkaSource(name='ticks', kafka_bootstrap_servers='127.0.0.1:1', topic='t', "
        "timestamp_field='event_timestamp', message_format=JsonFormat('commodity_code string, "
        f"event_timestamp timestamp, price double'), batch_source={batch})\n"
        "v = StreamFeatureView(name='v', source=ticks, entities=[c], schema=[Field(name='commodity_code', "
        "dtype=String), Field(name='price', dtype=Float64)])\n"
    )
    from ladle.repo.loader import load_repo

    store = FeatureStore(repo_path=root)
    store.apply(load_repo(root), partial=False, skip_source_validation=True)
    return store


@pytest.mark.parametrize(
    ("batch", "offline", "sink"),
    [
        ("FileSource(name='h', path='data/h/', timestamp_field='event_timestamp')", "{type: duckdb}", "OfflineLog"),
        ("FileSource(name='h', path='data/h/', timestamp_field='event_timestamp')", "{type: iceberg}", "IcebergLog"),
        ("IcebergSource(table='ns.h', timestamp_field='event_timestamp')", "{type: iceberg}", "IcebergLog"),
    ],
)
def test_the_sink_follows_the_batch_source_and_offline_store(tmp_path: Path, batch: str, offline: str,
                                                              sink: str) -> None:  # fmt: skip
    from ladle.streaming.process import source_plans, stream_views

    store = write_repo(tmp_path / "repo", batch, offline)
    try:
        plans = source_plans(store, stream_views(store))
        assert [type(p.log).__name__ for p in plans] == [sink]
    finally:
        store.close()


def test_an_iceberg_batch_source_on_the_duckdb_store_is_refused(tmp_path: Path) -> None:
    from ladle.streaming.process import source_plans, stream_views

    store = write_repo(tmp_path / "repo", "IcebergSource(table='ns.h', timestamp_field='event_timestamp')",
                       "{type: duckdb}")  # fmt: skip
    try:
        with pytest.raises(ConfigError, match=r"set offline_store\.type: iceberg"):
            source_plans(store, stream_views(store))
    finally:
        store.close()


def test_concurrent_flushes_of_two_processes_all_land_once(tmp_path: Path) -> None:
    """Two sinks (two stream processes holding different partitions) appending to one table at once:
    a commit that loses the race is retried on the new metadata; every flush lands exactly once."""
    import threading

    block = IcebergOfflineStoreConfig(namespace="stream")
    source = kafka_source(IcebergSource(table="s.ticks", timestamp_field="event_timestamp"))
    logs = [IcebergLog(source, block, tmp_path, SCHEMA) for _ in range(2)]
    logs[0].write_all({0: events([{"commodity_code": "a", "event_timestamp": BASE, "price": 1.0,
                                   "_kafka_partition": 0, "_kafka_offset": 0}])})  # fmt: skip
    errors: list[BaseException] = []

    def flushes(log: IcebergLog, partition: int) -> None:
        try:
            for i in range(1, 16):
                row = {"commodity_code": "a", "event_timestamp": BASE + i, "price": float(i),
                       "_kafka_partition": partition, "_kafka_offset": i}  # fmt: skip
                log.write_all({partition: events([row])})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=flushes, args=(log, p)) for p, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    got = sorted((p, o) for p, o, *_ in table_rows(logs[0]))
    assert got == sorted([(0, 0)] + [(p, i) for p in (0, 1) for i in range(1, 16)])
    table = logs[0]._current()
    assert table is not None
    assert sum(1 for s in table.snapshots() if OFFSETS_PROPERTY in s.summary.additional_properties) == 31


def test_truncation_after_snapshot_expiry_still_finds_uncommitted_rows(tmp_path: Path) -> None:
    """With the summary of a partition's flushes expired, the sink scans instead of trusting them."""
    from datetime import UTC, datetime

    block = IcebergOfflineStoreConfig(namespace="stream")
    log = IcebergLog(kafka_source(IcebergSource(table="s.ticks", timestamp_field="event_timestamp")), block,
                     tmp_path, SCHEMA)  # fmt: skip

    def rows(p: int, offsets: range) -> pa.Table:
        return events([{"commodity_code": "a", "event_timestamp": BASE + o, "price": 1.0, "_kafka_partition": p,
                        "_kafka_offset": o} for o in offsets])  # fmt: skip

    log.write_all({0: rows(0, range(10))})
    log.write_all({1: rows(1, range(5))})
    table = log._current()
    assert table is not None and table.properties["commit.manifest-merge.enabled"] == "true"
    table.maintenance.expire_snapshots().older_than(datetime.now(UTC)).commit()
    assert len(log._current().snapshots()) == 1  # type: ignore[union-attr]
    assert log.truncate_from(0, 10) == 0
    assert log.truncate_from(0, 5) == 5
    assert log.truncate_from(1, 5) == 0
    assert sorted((p, o) for p, o, *_ in table_rows(log)) == [(0, o) for o in range(5)] + [(1, o) for o in range(5)]
