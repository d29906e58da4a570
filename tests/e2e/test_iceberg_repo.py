"""The commodity repo on Apache Iceberg gives the same answers as on the embedded DuckDB defaults.

A copy of ``feature_repo`` is run through the real CLI twice (``ladle ingest`` of a bounded window
of the committed real data, ``apply``, ``materialize``): once with ``feature_store.yaml`` (Parquet +
DuckDB), once with ``feature_store.iceberg.yaml`` (a SQLite catalog, or a PostgreSQL catalog with
its own catalog name). Then the same training query (``get_historical_features``) and the same
online query (``get_online_features``) over a fixed entity frame must give identical answers, and
each Iceberg table must hold the same rows as its Parquet directory. Re-running the ingestion on
Iceberg (one replacement commit per window) changes nothing.

The repo's streams too: ``ladle publish`` sends simulated ticks and observations once to a local
broker; each setup's ``ladle stream`` (own consumer group) stores them (Parquet files, or appends to
the Iceberg tables ``commodity_analytics.<kafka batch source>``); the stored events, the stream
views' training frame (computed from those tables) and their online answers must be identical.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from ladle import FeatureStore, FileSource
from ladle.definitions import FeatureView, PushSource

ROOT = Path(__file__).resolve().parents[2]
START, END = "2008-01-01", "2014-01-01"  # prices, the last macro releases and all of the 2013 weather
VIEWS = ("commodity_price_features", "economic_features", "weather_features")
ICEBERG_YAML = "feature_store.iceberg.yaml"


def ladle(repo: Path, config: str, *args: str, kafka: str = "") -> str:
    """Run the CLI on ``repo`` with the config file ``config`` (in the repo)."""
    done = subprocess.run(
        command(repo, config, *args), capture_output=True, text=True, env=environment(kafka), check=False
    )
    assert done.returncode == 0, f"ladle {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def environment(kafka: str = "") -> dict[str, str]:
    """The CLI's environment: the committed real data, and the broker the sources are applied with."""
    env = {**os.environ, "LADLE_DATA_DIR": str(ROOT / "data")}
    if kafka:
        env["LADLE_KAFKA_BOOTSTRAP_SERVERS"] = kafka
    return env


def command(repo: Path, config: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "ladle", "-c", str(repo), "-f", str(repo / config), *args]


def run_repo(repo: Path, config: str) -> None:
    """Ingest the window, apply, materialize the window's newest rows online."""
    ladle(repo, config, "ingest", "--start", START, "--end", END)
    ladle(repo, config, "apply")
    views = [arg for view in VIEWS for arg in ("-v", view)]
    ladle(repo, config, "materialize", f"{START}T00:00:00", f"{END}T00:00:00", *views)


def copy_repo(parent: Path) -> Path:
    path = parent / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", path, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return path


@pytest.fixture(scope="module")
def duckdb_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_repo(tmp_path_factory.mktemp("on_duckdb"))
    run_repo(repo, "feature_store.yaml")
    return repo


@pytest.fixture(params=["sqlite", "postgresql"])
def iceberg_repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """The repo run with the shipped Iceberg variant (SQLite catalog), or that variant pointed at
    the PostgreSQL server's ``postgres`` database with a catalog name of its own (dropped after)."""
    repo = copy_repo(tmp_path)
    if request.param == "postgresql":
        server: str = request.getfixturevalue("postgres_server")
        config = yaml.safe_load((repo / ICEBERG_YAML).read_text())
        config["offline_store"]["catalog"]["uri"] = server.replace("postgresql+psycopg://", "postgresql://")
        config["offline_store"]["catalog_name"] = f"e2e_{uuid.uuid4().hex[:12]}"
        (repo / ICEBERG_YAML).write_text(yaml.safe_dump(config))
    run_repo(repo, ICEBERG_YAML)
    yield repo
    if request.param == "postgresql":
        drop_tables(repo)


def drop_tables(repo: Path) -> None:
    """Remove this test's tables and namespace from the shared PostgreSQL catalog."""
    from ladle.offline.iceberg.catalog import Catalogs, IcebergOfflineStoreConfig

    store = open_store(repo, ICEBERG_YAML)
    try:
        block = store.config.offline_store
        assert isinstance(block, IcebergOfflineStoreConfig)
        catalog = Catalogs(block, store.repo_path).get()
        for identifier in catalog.list_tables(block.namespace):
            catalog.drop_table(identifier)
        catalog.drop_namespace(block.namespace)
    finally:
        store.close()


def open_store(repo: Path, config: str) -> FeatureStore:
    return FeatureStore(repo_path=repo, fs_yaml_file=repo / config)


def entity_frame() -> pd.DataFrame:
    """Fixed entity rows: every key kind, times inside the window, at its edges, and an unknown key."""
    times = pd.to_datetime(
        ["2008-01-01 00:00", "2008-07-11 19:30", "2009-05-01 14:00", "2013-03-15 06:00",
         "2013-07-04 19:29", "2013-07-04 19:30", "2013-12-31 23:00", "2014-02-01 00:00"],
        utc=True,
    )  # fmt: skip
    rows = []
    for i, t in enumerate(times):
        for j, (commodity, country, location) in enumerate(
            [("crude_oil_wti", "US", "JFK"), ("crude_oil_wti", "US", "EWR"), ("unknown", "XX", "LGA")]
        ):
            rows.append({"row": i * 3 + j, "commodity_code": commodity, "country_code": country,
                         "location_id": location, "event_timestamp": t})  # fmt: skip
    return pd.DataFrame(rows)


def feature_refs(store: FeatureStore) -> list[str]:
    snapshot = store.snapshot(allow_cache=False)
    return [f"{v}:{f}" for v in VIEWS for f in snapshot.feature_view(v).feature_names]


def stored_online(store: FeatureStore, rows: list[dict[str, str]]) -> dict[str, list[Any]]:
    """What the online store holds for the entities, read without ttl (the 2013 rows are past it)."""
    from ladle.online.base import ReadRequest

    snapshot = store.snapshot(allow_cache=False)
    out: dict[str, list[Any]] = {}
    for name in VIEWS:
        view = snapshot.feature_view(name)
        keys = {k: [r[k] for r in rows] for k in view.join_keys}
        result = store.online_store.read(store.project, [ReadRequest(view, view.feature_names, keys)])[0]
        out[f"held:{name}:event_ts"] = list(result.event_ts)
        for feature in view.feature_names:
            out[f"held:{name}:{feature}"] = list(result.values[feature])
    return out


def answers(repo: Path, config: str) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
    """The training frame (sorted by row), and for the fixed entities the online response (values,
    event times, statuses) and what the online store holds."""
    store = open_store(repo, config)
    try:
        refs = feature_refs(store)
        training = store.get_historical_features(
            entity_df=entity_frame(), features=refs, full_feature_names=True
        ).to_df()
        training = training.sort_values("row").reset_index(drop=True)
        keys = [("crude_oil_wti", "US", "JFK"), ("crude_oil_wti", "US", "EWR"), ("unknown", "XX", "LGA"),
                ("natural_gas", "US", "LGA")]  # fmt: skip
        rows = [{"commodity_code": c, "country_code": k, "location_id": loc} for c, k, loc in keys]
        online = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
        statuses = {name: [s.name for s in values] for name, values in online.statuses_dict().items()}
        held = stored_online(store, rows)
        return training, {**online.to_dict(include_event_timestamps=True), **statuses, **held}
    finally:
        store.close()


def parquet_rows(repo: Path, view: FeatureView) -> pa.Table:
    """The rows of the view's batch source directory (the DuckDB setup)."""
    import pyarrow.dataset as ds

    source = view.batch_source
    assert isinstance(source, FileSource)
    if "*" in source.path:  # the stream's files: a glob
        files = sorted(str(f) for f in repo.glob(source.path) if not f.name.startswith("."))
        return ds.dataset(files, format="parquet").to_table()
    return ds.dataset(repo / source.path, format="parquet", partitioning="hive").to_table()


def iceberg_rows(repo: Path, view: FeatureView) -> pa.Table:
    """The rows of the view's Iceberg table."""
    from ladle.offline.iceberg.catalog import Catalogs, IcebergOfflineStoreConfig, table_ref
    from ladle.offline.iceberg.tables import load_table

    store = open_store(repo, ICEBERG_YAML)
    try:
        block = store.config.offline_store
        assert isinstance(block, IcebergOfflineStoreConfig)
        ref = table_ref(view.source, block)
        table = load_table(Catalogs(block, store.repo_path).get(ref.catalog), ref)
        assert table is not None, f"no iceberg table {ref}"
        return table.scan().to_arrow()
    finally:
        store.close()


def comparable(rows: pa.Table, view: FeatureView) -> pd.DataFrame:
    """The view's key, time and feature columns, sorted, as pandas (timestamps in UTC)."""
    ts = view.batch_source.timestamp_field
    columns = [*view.join_keys, ts, *view.feature_names]
    frame = rows.select(columns).to_pandas()
    frame[ts] = pd.to_datetime(frame[ts], utc=True)
    return frame.sort_values([*view.join_keys, ts]).reset_index(drop=True)


@pytest.mark.slow
def test_the_commodity_repo_answers_the_same_on_iceberg(duckdb_repo: Path, iceberg_repo: Path) -> None:
    store = open_store(iceberg_repo, ICEBERG_YAML)
    try:
        snapshot = store.snapshot(allow_cache=False)
        views = {name: snapshot.feature_view(name) for name in VIEWS}
    finally:
        store.close()
    for name, view in views.items():
        assert isinstance(view.source, PushSource)
        on_files = comparable(parquet_rows(duckdb_repo, view), view)
        assert len(on_files) > 10, f"{name}: the window holds real rows"
        pd.testing.assert_frame_equal(comparable(iceberg_rows(iceberg_repo, view), view), on_files)

    want_training, want_online = answers(duckdb_repo, "feature_store.yaml")
    have_training, have_online = answers(iceberg_repo, ICEBERG_YAML)
    filled = want_training[[c for c in want_training.columns if "price" in c or "temperature" in c]].notna()
    assert filled.to_numpy().sum() > 20, "the training frame joins real values"
    pd.testing.assert_frame_equal(have_training, want_training)
    assert have_online == want_online
    held = want_online["held:commodity_price_features:current_price"]
    assert held[0] is not None and held[2] is None, "the newest 2013 close was materialized; no unknown key"

    # ingesting the same window again replaces it: the same answers
    ladle(iceberg_repo, ICEBERG_YAML, "ingest", "--start", START, "--end", END)
    again, _ = answers(iceberg_repo, ICEBERG_YAML)
    pd.testing.assert_frame_equal(again, want_training)


# -- the repo's streams: ladle publish → ladle stream → the Kafka sources' tables ---------------------

STREAM_VIEWS = ("commodity_price_stream", "weather_stream")


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    """A local Kafka-protocol broker (Tansu) of this module; skipped loudly (failed under CI) without it."""
    from ladle.errors import MissingExtraError
    from ladle.streaming.broker import LocalBroker, tansu_binary

    try:
        tansu_binary()
    except MissingExtraError as exc:
        reason = f"SERVICE DOWN: the local Kafka broker cannot start: {exc}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(reason)
        pytest.skip(reason)
    with LocalBroker() as broker:
        yield broker.bootstrap_servers


def wait_consumed(kafka: str, group: str, topics: list[str], timeout: float = 90) -> None:
    """Wait until ``group`` committed every partition of ``topics`` up to its end."""
    import time

    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": kafka}).list_topics(timeout=10)
    parts = [TopicPartition(t, p) for t in topics for p in meta.topics[t].partitions]
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False})
    try:
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        deadline = time.monotonic() + timeout
        seen: dict[tuple[str, int], int] = {}
        while time.monotonic() < deadline:
            seen = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(parts, timeout=5)}
            if all(seen[k] >= end for k, end in ends.items()):
                return
            time.sleep(0.2)
        raise AssertionError(f"group {group} committed {seen}, the topics end at {ends}")
    finally:
        consumer.close()


def kafka_rows(rows: pa.Table) -> pd.DataFrame:
    """The stream's rows in Kafka order, timestamps in UTC."""
    frame = rows.to_pandas()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame = frame[sorted(frame.columns)]
    return frame.sort_values(["_kafka_partition", "_kafka_offset"]).reset_index(drop=True)


def run_streams(kafka: str, setups: dict[str, Path]) -> None:
    """Publish simulated ticks and observations once; run each setup's ``ladle stream`` (its own
    group) until it has committed every message, then stop it with SIGTERM."""
    import signal

    repo0 = setups["feature_store.yaml"]
    ladle(repo0, "feature_store.yaml", "publish", "--bootstrap-servers", kafka, "--count", "40", "--interval", "0.02",
          "--weather-interval", "0.05", "--partitions", "2")  # fmt: skip
    processes = []
    for config, repo in setups.items():
        group = f"e2e-{uuid.uuid4().hex[:8]}"
        log = open(repo.parent / "stream.log", "wb")  # noqa: SIM115 - closed below
        argv = command(repo, config, "--log-level", "INFO", "stream", "--group-id", group, "--metrics-port", "0")
        processes.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment()), group, log))
    try:
        for (proc, group, _), repo in zip(processes, setups.values(), strict=True):
            output = repo.parent / "stream.log"
            assert proc.poll() is None, f"ladle stream exited with {proc.returncode}:\n{output.read_text()[-3000:]}"
            wait_consumed(kafka, group, ["commodity-ticks", "weather-observations"], timeout=120)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, output.read_text()[-3000:]
            assert "Traceback" not in output.read_text(), output.read_text()[-3000:]
    finally:
        for proc, _, log in processes:
            if proc.poll() is None:
                proc.kill()
            log.close()


def stream_answers(repo: Path, config: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
    """The stream views' training frame over ``frame`` and their online answers for its keys."""
    store = open_store(repo, config)
    try:
        snapshot = store.snapshot(allow_cache=False)
        refs = [f"{v}:{f}" for v in STREAM_VIEWS for f in snapshot.feature_view(v).feature_names]
        training = store.get_historical_features(entity_df=frame, features=refs, full_feature_names=True).to_df()
        training = training.sort_values(["event_timestamp", "commodity_code", "location_id"]).reset_index(drop=True)
        rows = frame[["commodity_code", "location_id"]].drop_duplicates().to_dict("records")
        online = store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
        return training, online.to_dict(include_event_timestamps=True)
    finally:
        store.close()


@pytest.mark.slow
def test_the_repo_streams_land_in_iceberg_as_in_files(kafka: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    started = datetime.now(UTC) - timedelta(minutes=1)
    setups = {"feature_store.yaml": copy_repo(tmp_path / "duckdb"), ICEBERG_YAML: copy_repo(tmp_path / "iceberg")}
    for config, repo in setups.items():
        ladle(repo, config, "ingest", "--start", START, "--end", END)
        ladle(repo, config, "apply", kafka=kafka)
    run_streams(kafka, setups)
    end = datetime.now(UTC) + timedelta(minutes=1)
    for config, repo in setups.items():
        views = [arg for view in STREAM_VIEWS for arg in ("-v", view)]
        ladle(repo, config, "materialize", started.isoformat(), end.isoformat(), *views)

    store = open_store(setups[ICEBERG_YAML], ICEBERG_YAML)
    try:
        snapshot = store.snapshot(allow_cache=False)
        stream_views = {name: snapshot.feature_view(name) for name in STREAM_VIEWS}
    finally:
        store.close()
    keys: dict[str, list[str]] = {}
    for name, view in stream_views.items():
        on_files = kafka_rows(parquet_rows(setups["feature_store.yaml"], view))
        assert len(on_files) >= 40, f"{name}: the stream stored the published events"
        pd.testing.assert_frame_equal(kafka_rows(iceberg_rows(setups[ICEBERG_YAML], view)), on_files)
        keys[view.join_keys[0]] = sorted(set(on_files[view.join_keys[0]]))

    moments = pd.to_datetime([started + timedelta(seconds=30), end], utc=True)
    frame = pd.DataFrame(
        [{"commodity_code": c, "location_id": loc, "event_timestamp": t}
         for t in moments for c in keys["commodity_code"] for loc in keys["location_id"]]
    )  # fmt: skip
    results = [stream_answers(repo, config, frame) for config, repo in setups.items()]
    (want_training, want_online), (have_training, have_online) = results
    assert want_training["commodity_price_stream__current_price"].notna().sum() > 0
    pd.testing.assert_frame_equal(have_training, want_training)
    assert have_online == want_online
