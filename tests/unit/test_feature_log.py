"""Served-feature logging on the embedded stores (SQLite online, Parquet offline): SDK and REST."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import FeatureService, FeatureStore
from ladle.config import FeatureLoggingConfig
from ladle.definitions.feature_logging import FileLoggingDestination, LoggingConfig
from ladle.definitions.refs import ViewSelection
from ladle.errors import DefinitionError
from ladle.monitor.feature_log import LOG_DROPPED, FeatureLogger, log_source
from ladle.monitor.feature_log_read import log_view
from ladle.server.rest import create_app
from unit.feature_log_repo import EVENT_TIME, build, entity_rows

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

SQLITE = {"type": "sqlite", "path": "data/online.db"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    s = build(tmp_path_factory.mktemp("flog"), SQLITE)
    yield s
    s.close()


def _service(store: FeatureStore, name: str = "price_model"):  # type: ignore[no-untyped-def]
    return store.snapshot().feature_service(name)


def test_sdk_reads_of_a_logged_service_are_logged_with_values_statuses_and_times(store: FeatureStore) -> None:
    before = datetime.now(UTC)
    pairs = [("crude_oil_wti", "ICE"), ("brent", "NYMEX"), ("nickel", "LME")]
    response = store.get_online_features(_service(store), entity_rows(pairs))
    logged = store.get_feature_log("price_model", start=before - timedelta(seconds=1)).to_pandas()
    assert len(logged) == 3
    assert logged["request_id"].nunique() == 1 and logged["request_id"].iloc[0]
    assert logged["variant"].isna().all()
    assert (logged["sample_rate"] == 1.0).all()  # logged at the configured rate (no CPU budget here)
    assert logged["log_time"].min() >= pd.Timestamp(before) - pd.Timedelta(seconds=1)
    by_code = logged.set_index("commodity_code")
    served = response.to_dict()
    for i, (code, venue) in enumerate(pairs):
        row = by_code.loc[code]
        assert row["venue"] == venue
        price = served["current_price"][i]
        assert (pd.isna(row["prices__current_price"]) and price is None) or row["prices__current_price"] == price
    assert by_code.loc["crude_oil_wti", "prices__current_price__status"] == "PRESENT"
    assert by_code.loc["crude_oil_wti", "prices__current_price__event_timestamp"] == pd.Timestamp(EVENT_TIME)
    assert by_code.loc["nickel", "prices__current_price__status"] == "NOT_FOUND"
    assert pd.isna(by_code.loc["nickel", "prices__current_price__event_timestamp"])
    assert by_code.loc["brent", "venue_prices__spread__status"] == "PRESENT"


def test_join_keys_are_logged_by_name_whatever_the_request_order(store: FeatureStore) -> None:
    before = datetime.now(UTC)
    rows = [{"venue": "NYMEX", "commodity_code": "gold"}]  # venue first: the response's key columns follow
    response = store.get_online_features("price_model", rows)  # the service by name
    assert response.feature_names[:2] == ["venue", "commodity_code"]
    logged = store.get_feature_log("price_model", start=before).to_pandas()
    assert list(logged["commodity_code"]) == ["gold"] and list(logged["venue"]) == ["NYMEX"]


def test_reads_by_feature_list_or_of_an_unlogged_service_are_not_logged(store: FeatureStore) -> None:
    before = datetime.now(UTC)
    store.get_online_features(["prices:current_price"], [{"commodity_code": "gold"}])
    store.get_online_features(_service(store, "plain"), [{"commodity_code": "gold"}])
    assert store.get_feature_log("price_model", start=before).num_rows == 0
    with pytest.raises(DefinitionError, match="no logging_config"):
        log_source(store, "plain")


def test_the_log_is_a_source_for_point_in_time_training_sets(store: FeatureStore) -> None:
    store.get_online_features(_service(store), entity_rows([("gold", "ICE")]))
    store.feature_logger.flush()
    view = log_view(store, "price_model")
    entity_df = pa.table(
        {
            "commodity_code": ["gold"],
            "venue": ["ICE"],
            "event_timestamp": pa.array([datetime.now(UTC) + timedelta(seconds=1)], pa.timestamp("us", tz="UTC")),
        }
    )
    columns = ("prices__current_price", "prices__current_price__status")
    job = store.offline_store.historical(entity_df, "event_timestamp", [ViewSelection(view, columns, view.name)], False)
    frame = job.to_df()
    served = store.get_online_features(["prices:current_price"], [{"commodity_code": "gold"}]).to_dict()
    assert frame["prices__current_price"].iloc[0] == served["current_price"][0]
    assert frame["prices__current_price__status"].iloc[0] == "PRESENT"
    source = log_source(store, "price_model")
    assert source.timestamp_field == "log_time"
    files = list((store.repo_path / "data" / "feature_logs" / "price_model").glob("*.parquet"))
    assert files and "request_id" in pq.read_schema(files[0]).names


def test_sampling_is_deterministic_by_request_id_and_close_to_the_rate(store: FeatureStore) -> None:
    prices = store.get_feature_view("prices")
    sampled = FeatureService(
        name="sampled", features=[prices], logging_config=LoggingConfig(sample_rate=0.3, deterministic=True)
    )
    store.apply([sampled])
    snapshot = store.snapshot(allow_cache=False)
    response = store.get_online_features(["prices:current_price"], [{"commodity_code": "gold"}])
    ids = [f"req-{i}" for i in range(2000)]
    before = datetime.now(UTC) - timedelta(seconds=1)
    logger = FeatureLogger(store.config)
    for rid in ids:
        logger.log(snapshot, "sampled", response, rid)
    assert logger.flush() == logger.written > 0
    logger.close()
    first_log = store.get_feature_log("sampled", start=before)
    first = set(first_log.column("request_id").to_pylist())
    assert 0.25 < len(first) / len(ids) < 0.35
    assert set(first_log.column("sample_rate").to_pylist()) == {0.3}
    again = FeatureLogger(store.config)  # another process would pick the same requests
    for rid in ids:
        again.log(snapshot, "sampled", response, rid)
    assert again.flush() == len(first)
    again.close()
    logged = store.get_feature_log("sampled", start=before).column("request_id").to_pylist()
    assert sorted(logged) == sorted(first) * 2 or sorted(logged) == sorted(list(first) * 2)


def test_a_full_buffer_drops_and_counts_instead_of_blocking(tmp_path: Path, store: FeatureStore) -> None:
    settings = FeatureLoggingConfig(queue_capacity=3, flush_interval_secs=3600)
    server = store.config.feature_server.model_copy(update={"feature_logging": settings})
    config = store.config.model_copy(update={"feature_server": server})
    logger = FeatureLogger(config)
    logger._start = lambda: None  # type: ignore[method-assign]  # no shipper: the buffer stays as filled
    logger._thread = threading.current_thread()  # (and the request path sees one running)
    snapshot = store.snapshot()
    response = store.get_online_features(_service(store), entity_rows([("gold", "ICE")]))
    counter = LOG_DROPPED.labels(feature_service="price_model")
    dropped_before = counter._value.get()
    for i in range(10):
        logger.log(snapshot, "price_model", response, f"r{i}")
    assert logger._buffered == 3
    assert logger.dropped == 7
    assert counter._value.get() - dropped_before == 7
    assert logger.flush() == 3  # one row per buffered request
    logger._thread = None
    logger.close()


def test_rest_echoes_or_generates_the_request_id_and_logs_under_it(store: FeatureStore) -> None:
    body = {"feature_service": "price_model", "entities": {"commodity_code": ["brent"], "venue": ["ICE"]}}
    before = datetime.now(UTC)
    with TestClient(create_app(store)) as client:
        given = client.post("/get-online-features", json=body, headers={"X-Request-ID": "abc-123"})
        made = client.post("/get-online-features", json=body)
        listed = client.post(
            "/get-online-features", json={"features": ["prices:current_price"], "entities": {"commodity_code": ["x"]}}
        )
    assert given.status_code == made.status_code == 200
    assert given.headers["x-request-id"] == "abc-123"
    generated = made.headers["x-request-id"]
    assert generated and generated != "abc-123"
    assert "x-request-id" not in listed.headers
    assert set(given.json()) == {"metadata", "results"}  # Feast's body, nothing added
    logged = store.get_feature_log("price_model", start=before).to_pandas()
    assert sorted(logged["request_id"]) == sorted(["abc-123", generated])
    assert set(logged["commodity_code"]) == {"brent"}


def test_logging_config_validates_and_round_trips() -> None:
    with pytest.raises(DefinitionError, match="sample_rate"):
        LoggingConfig(sample_rate=0)
    with pytest.raises(DefinitionError, match="sample_rate"):
        LoggingConfig(sample_rate=1.5)
    with pytest.raises(DefinitionError, match="path"):
        FileLoggingDestination(path="")
    cfg = LoggingConfig(destination=FileLoggingDestination(path="logs/x"), sample_rate=0.25, deterministic=True)
    assert LoggingConfig.from_spec(cfg.to_spec()) == cfg


def test_the_variant_that_served_is_logged_per_row() -> None:
    from ladle.monitor.feature_log_table import Batch, LogLayout, build_table
    from ladle.retrieval.response import OnlineResponse

    layout = LogLayout((("commodity_code", pa.string()),), (("prices__current_price", pa.float64()),))
    split = OnlineResponse(
        ["commodity_code", "current_price"], [["a", "b"], [1.0, None]], [[1, 1], [1, 3]], [[0, 0], [5, 0]]
    )
    split.variant = "v2"  # type: ignore[attr-defined]  # set by an A/B split (docs/versions.md)
    plain = OnlineResponse(["commodity_code", "current_price"], [["c"], [2.0]], [[1], [1]], [[0], [7]])
    batch = Batch(["commodity_code"], 1, None)
    batch.add_values("r1", 1.5, split)
    batch.add_values("r2", 2.5, plain)
    table = build_table(layout, [batch]).to_pydict()
    assert table["request_id"] == ["r1", "r1", "r2"]
    assert table["variant"] == ["v2", "v2", None]
    assert table["prices__current_price__status"] == ["PRESENT", "NOT_FOUND", "PRESENT"]
    assert [t.timestamp() if t else None for t in table["prices__current_price__event_timestamp"]] == [5e-6, None, 7e-6]
    assert [t.timestamp() for t in table["log_time"]] == [1.5, 1.5, 2.5]


def test_a_split_is_logged_arm_by_arm_into_each_arm_services_log_with_its_variant(tmp_path: Path) -> None:
    store = build(tmp_path, SQLITE)
    try:
        snapshot = store.snapshot()
        logged = snapshot.feature_service("price_model")
        twin = FeatureService(
            name="price_model_b",
            features=[snapshot.feature_view("prices"), snapshot.feature_view("venue_prices")],
            logging_config=LoggingConfig(sample_rate=1.0),
        )
        split = FeatureService(name="price_ab", variants={"a": ("price_model", 0.5), "b": ("price_model_b", 0.5)})
        store.apply([*snapshot.entities.values(), *snapshot.data_sources.values(), *snapshot.feature_views.values(),
                     logged, snapshot.feature_service("plain"), twin, split])  # fmt: skip
        before = datetime.now(UTC)
        codes = ["crude_oil_wti", "brent", "nickel", "gold", "silver", "copper", "natural_gas", "wheat"]
        rows = [{"commodity_code": c, "venue": v} for c in codes for v in ("ICE", "NYMEX", "LME")]
        response = store.get_online_features("price_ab", rows)
        assert response.variants is not None and set(response.variants) == {"a", "b"}  # both arms served
        for arm, service in (("a", "price_model"), ("b", "price_model_b")):
            log = store.get_feature_log(service, start=before - timedelta(seconds=1)).to_pandas()
            pairs = zip(rows, response.variants, strict=True)
            served = [(r["commodity_code"], r["venue"]) for r, v in pairs if v == arm]
            assert sorted(zip(log["commodity_code"], log["venue"], strict=True)) == sorted(served)
            assert set(log["variant"]) == {arm} and log["request_id"].nunique() == 1
    finally:
        store.close()


def test_reads_with_every_row_present_are_logged_from_the_store_records_exactly(store: FeatureStore) -> None:
    """The usual read (every row present, fixed-width features) is logged from the store's records
    by NumPy; its rows must equal what was served, for both views of the service, beside a read with
    a missing entity (logged from the Python values) in the same batch."""
    before = datetime.now(UTC)
    present = [("crude_oil_wti", "ICE"), ("brent", "NYMEX"), ("gold", "ICE"), ("brent", "ICE")]
    full = store.get_online_features(_service(store), entity_rows(present))
    assert full.records is not None and len(full.records) == 2  # two views, one buffer per read
    partial = store.get_online_features(_service(store), entity_rows([("nickel", "LME")]))
    assert partial.records is None
    logged = store.get_feature_log("price_model", start=before).to_pandas()
    assert len(logged) == len(present) + 1
    assert logged["request_id"].nunique() == 2
    served = full.to_dict(include_event_timestamps=True)
    rows = logged[logged["commodity_code"] != "nickel"].reset_index(drop=True)
    assert list(zip(rows["commodity_code"], rows["venue"], strict=True)) == present
    for column, name in (("prices__current_price", "current_price"), ("venue_prices__spread", "spread")):
        assert list(rows[column]) == served[name]
        assert set(rows[column + "__status"]) == {"PRESENT"}
        assert [t.to_pydatetime() for t in rows[column + "__event_timestamp"]] == served[name + "__ts"]
    missing = logged[logged["commodity_code"] == "nickel"].iloc[0]
    assert missing["prices__current_price__status"] == "NOT_FOUND"


def test_a_killed_writer_is_replaced_and_nothing_not_yet_handed_to_it_is_lost(tmp_path: Path) -> None:
    s = build(tmp_path, SQLITE)
    try:
        rows = entity_rows([("gold", "ICE")])
        s.get_online_features(_service(s), rows)
        assert s.feature_logger.flush() == 1
        writer = s.feature_logger._writer
        assert writer is not None
        writer.process.kill()
        writer.process.wait()
        before = datetime.now(UTC)
        for _ in range(2):
            s.get_online_features(_service(s), rows)
        s.feature_logger.flush()
        assert s.feature_logger._writer is not writer and s.feature_logger._writer is not None
        assert s.feature_logger._writer.alive()
        assert s.get_feature_log("price_model", start=before).num_rows == 2
        assert s.feature_logger.dropped == 0
    finally:
        s.close()


def test_services_reading_different_features_of_one_view_each_get_their_own_rows(tmp_path: Path) -> None:
    """Two logged services over the same view but different features: their record shapes differ
    even where the read starts at the same column and the records have one layout."""
    s = build(tmp_path, SQLITE)
    try:
        from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType

        now = datetime.now(UTC)
        rows = pa.table({"commodity_code": ["gold"], "current_price": [3.5], "bid": [3.25],
                         "event_timestamp": pa.array([now], pa.timestamp("us", tz="UTC"))})  # fmt: skip
        pq.write_table(rows, tmp_path / "data" / "quotes.parquet")
        commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
        source = FileSource(name="quotes_src", path="data/quotes.parquet", timestamp_field="event_timestamp")
        quotes = FeatureView(
            name="quotes", entities=[commodity], ttl=timedelta(days=30), source=source,
            schema=[Field(name="current_price", dtype=Float64), Field(name="bid", dtype=Float64)],
        )  # fmt: skip
        one = FeatureService(name="quotes_one", features=[quotes[["bid"]]], logging_config=LoggingConfig())
        both = FeatureService(name="quotes_both", features=[quotes], logging_config=LoggingConfig())
        s.apply([source, quotes, one, both])
        s.write_to_online_store("quotes", rows)
        before = now - timedelta(seconds=1)
        answers = [s.get_online_features(name, [{"commodity_code": "gold"}]) for name in ("quotes_one", "quotes_both")]
        assert all(a.records is not None for a in answers)
        first = s.get_feature_log("quotes_one", start=before).to_pylist()
        second = s.get_feature_log("quotes_both", start=before).to_pylist()
        assert [(r["quotes__bid"], r["quotes__bid__status"]) for r in first] == [(3.25, "PRESENT")]
        assert [(r["quotes__current_price"], r["quotes__bid"]) for r in second] == [(3.5, 3.25)]
        assert s.feature_logger.dropped == 0
    finally:
        s.close()


def test_the_shipper_paces_hand_overs_and_keeps_every_request_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ladle.monitor import feature_log

    # Long enough that only the request count can make a hand-over due within this test.
    monkeypatch.setattr(feature_log, "_SHIP_MAX_SECONDS", 60.0)
    s = build(tmp_path, SQLITE)
    try:
        logger = s.feature_logger
        response = s.get_online_features(_service(s), entity_rows([("gold", "ICE")]))
        snapshot = s.snapshot()
        logger._handed_at = time.monotonic()  # as if just handed over
        few = feature_log._SHIP_AT_REQUESTS // 4
        for i in range(few):
            assert logger.log(snapshot, "price_model", response, f"pace-{i}") == f"pace-{i}"
        time.sleep(5 * feature_log._SHIP_SECONDS)  # several shipper ticks: none is due
        assert logger._batches and logger._buffered == few + 1  # (the SDK read's request too)
        total = few + feature_log._SHIP_AT_REQUESTS
        for i in range(few, total):
            logger.log(snapshot, "price_model", response, f"pace-{i}")
        deadline = time.monotonic() + 10.0  # due now: the next tick hands everything over
        while logger._batches and time.monotonic() < deadline:
            time.sleep(feature_log._SHIP_SECONDS)
        assert not logger._batches
        logger.flush()
        assert logger.dropped == 0
        folder = s.config.repo_path / "data" / "feature_logs" / "price_model"
        seen: list[int] = []
        parts = sorted(folder.glob("*.parquet"))
        assert parts
        for part in parts:
            ids = [
                int(r[5:])
                for r in pq.read_table(part, columns=["request_id"]).column(0).to_pylist()
                if r.startswith("pace-")
            ]
            assert ids == sorted(ids)  # in the order they were logged
            seen += ids
        assert sorted(seen) == list(range(total))  # every request, once
    finally:
        s.close()
