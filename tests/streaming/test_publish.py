"""``ladle publish``: SIMULATED ticks and observations on a real (Tansu) broker, read back and checked.

The messages must decode against the feature repo's own KafkaSources (every declared field, of its
declared type, nothing else), say they are simulated, carry the wall-clock time, and the prices must
continue the real series exactly as the live feed does (checked against ``feature_repo/feeds.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ladle.datasets import load_committed_extracts
from ladle.definitions import KafkaSource
from ladle.ingest.feed import FeedRequest
from ladle.repo.loader import import_repo_modules, load_repo
from ladle.streaming.publish import PRICE_LOOKBACK, Publisher, PublishSettings, default_models, publish
from ladle.types import Bool, Float64, String, UnixTimestamp

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "feature_repo"
DATA = ROOT / "data"
SEED = 2013


@pytest.fixture(scope="module")
def sources() -> dict[str, KafkaSource]:
    contents = load_repo(REPO)
    return {s.topic: s for s in contents.data_sources if isinstance(s, KafkaSource)}


@pytest.fixture(scope="module")
def repo_modules() -> dict[str, ModuleType]:
    return {path.stem: module for path, module in import_repo_modules(REPO)}


def read_all(servers: str, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": servers, "group.id": "test-publish", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Any] = []
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while len(out) < expected and datetime.now(UTC) < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                out.append(message)
        return out
    finally:
        consumer.close()


def check_against_format(record: dict[str, Any], source: KafkaSource) -> None:
    """Every field the source's JsonFormat declares, of its dtype; no other field."""
    fields = dict(source.message_format.fields())
    assert set(record) == set(fields), (sorted(record), sorted(fields))
    for name, dtype in fields.items():
        value = record[name]
        if dtype == String:
            assert isinstance(value, str) and value, name
        elif dtype == Float64:
            assert value is None or (isinstance(value, float) and np.isfinite(value)), (name, value)
        elif dtype == Bool:
            assert isinstance(value, bool), name
        elif dtype == UnixTimestamp:
            assert isinstance(value, str) and value.endswith("Z"), value
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
        else:
            raise AssertionError(f"unexpected dtype {dtype} of {name}")


def event_time(record: dict[str, Any]) -> datetime:
    return datetime.strptime(record["event_timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_published_messages_decode_against_the_repo_sources(kafka: str, sources: dict[str, KafkaSource]) -> None:
    extracts = load_committed_extracts(DATA)
    publisher = Publisher.build(default_models(extracts["wti_daily"]), extracts["nyc_weather"], seed=SEED)
    settings = PublishSettings(kafka, partitions=2, interval=0.05, weather_interval=0.05, count=4)
    before = datetime.now(UTC)
    result = publish(publisher, settings)
    after = datetime.now(UTC)
    assert (result.ticks, result.observations) == (4 * 2, 4 * 3)

    ticks = read_all(kafka, "commodity-ticks", result.ticks)
    observations = read_all(kafka, "weather-observations", result.observations)
    assert len(ticks) == result.ticks and len(observations) == result.observations
    assert {m.partition() for m in ticks} <= {0, 1}

    by_code: dict[str, list[dict[str, Any]]] = {}
    for message in ticks:
        record = json.loads(message.value())
        check_against_format(record, sources["commodity-ticks"])
        assert message.key().decode() == record["commodity_code"]
        assert record["simulated"] is True
        assert record["price"] > 0 and record["volume"] >= 0
        assert before - timedelta(milliseconds=1) <= event_time(record) <= after
        by_code.setdefault(record["commodity_code"], []).append(record)
    assert sorted(by_code) == ["crude_oil_wti", "natural_gas"]
    for records in by_code.values():
        times = [event_time(r) for r in records]
        assert times == sorted(times) and len(set(times)) == len(times)  # one partition per key, in order

    stations = set()
    for message in observations:
        record = json.loads(message.value())
        check_against_format(record, sources["weather-observations"])
        assert record["simulated"] is True and message.key().decode() == record["location_id"]
        assert -90 <= record["temperature_c"] <= 60 and 850 <= record["pressure_hpa"] <= 1090
        stations.add(record["location_id"])
    assert stations == {"EWR", "JFK", "LGA"}


def test_the_runtime_decoder_accepts_every_published_message(kafka: str, sources: dict[str, KafkaSource]) -> None:
    from ladle.streaming import decode

    extracts = load_committed_extracts(DATA)
    publisher = Publisher.build(default_models(extracts["wti_daily"]), None, seed=SEED)
    settings = PublishSettings(kafka, ticks_topic="ticks-decoder", interval=0.05, count=3)
    result = publish(publisher, settings)
    messages = read_all(kafka, "ticks-decoder", result.ticks)
    decoder = decode.Decoder(sources["commodity-ticks"], [])
    decoded = decoder.decode([m.value() for m in messages], 0, list(range(len(messages))))
    assert decoded.rejected == []
    assert decoded.table.num_rows == result.ticks
    assert all(decoded.table.column("simulated").to_pylist())


def test_prices_continue_the_real_series_as_the_live_feed_does(repo_modules: dict[str, ModuleType]) -> None:
    feeds = repo_modules["feeds"]
    start = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)  # a Wednesday: the simulated market is open
    assert feeds.prices_feed.warmup + feeds.prices_feed.catch_up == PRICE_LOOKBACK
    origin = start - PRICE_LOOKBACK
    live = feeds.live_prices(FeedRequest(origin=origin, now=start, seed=SEED)).to_pandas()
    live = live[live["event_timestamp"] > pd.Timestamp(start - timedelta(days=3))]
    assert len(live) > 40

    wti = pd.read_parquet(DATA / "wti_daily.parquet")
    publisher = Publisher.build(default_models(load_committed_extracts(DATA)["wti_daily"]), None, SEED, start=start)
    # the path starts at the last real close: the first simulated close (2026-01-22 19:30) is it
    first_close = int(datetime(2026, 1, 22, 19, 30, tzinfo=UTC).timestamp() * 1_000_000)
    assert publisher.tick("crude_oil_wti", first_close, None)["price"] == pytest.approx(wti["price"].iloc[-1], abs=1e-4)

    for row in live.itertuples():
        us = int(row.event_timestamp.timestamp() * 1_000_000)
        tick = publisher.tick(row.commodity_code, us, None)
        assert tick["price"] == pytest.approx(row.current_price, abs=1e-4), (row.commodity_code, row.event_timestamp)

    # between two consecutive open hours the price moves between the two hourly prices
    hours = live[live["commodity_code"] == "crude_oil_wti"].sort_values("event_timestamp")
    a, b = hours.iloc[-3], hours.iloc[-2]
    assert b.event_timestamp - a.event_timestamp == pd.Timedelta(hours=1)
    middle = int((a.event_timestamp + pd.Timedelta(minutes=30)).timestamp() * 1_000_000)
    half_hour = publisher.tick("crude_oil_wti", middle, middle - 1_800_000_000)
    low, high = sorted((a.current_price, b.current_price))
    assert low - 1e-4 <= half_hour["price"] <= high + 1e-4
    assert half_hour["volume"] > 0  # half an hour of an open market traded something


def test_a_shut_market_holds_the_price_with_no_volume() -> None:
    start = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)  # Saturday noon
    publisher = Publisher.build(default_models(load_committed_extracts(DATA)["wti_daily"]), None, SEED, start=start)
    us = int(start.timestamp() * 1_000_000)
    first = publisher.tick("crude_oil_wti", us, None)
    later = publisher.tick("crude_oil_wti", us + 3_600_000_000, us)
    assert first["price"] == later["price"] > 0
    assert later["volume"] == 0.0


def test_the_cli_reports_a_missing_broker_in_one_line() -> None:
    env = {**os.environ, "LADLE_DATA_DIR": str(DATA)}
    args = ["publish", "--bootstrap-servers", "127.0.0.1:1", "--count", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "ladle", "-c", str(REPO), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no Kafka broker answers at 127.0.0.1:1" in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_the_dev_broker_serves_until_sigterm_and_refuses_a_busy_port() -> None:
    from ladle.streaming.broker import free_port

    from .conftest import require_broker

    require_broker()

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ladle.streaming.devbroker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"ready 127.0.0.1:{port}"
        busy = subprocess.run(
            [sys.executable, "-m", "ladle.streaming.devbroker", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert busy.returncode == 1
        assert busy.stderr.strip() == f"devbroker: port {port} on 127.0.0.1 is already in use"
        topics = {"probe-topic": 1}
        from ladle.streaming.publish import ensure_topics

        assert ensure_topics(f"127.0.0.1:{port}", topics) == ["probe-topic"]
        assert ensure_topics(f"127.0.0.1:{port}", topics) == []  # already there
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
