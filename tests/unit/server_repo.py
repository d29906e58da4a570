"""A small real feature repo for the server tests (SQLite registry and online store, Parquet source).

Rows go into the online store through the online store protocol so read tests do not depend on
the materializer; the write, push and materialize endpoints are tested through the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ladle import (
    Array,
    Bool,
    Bytes,
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int32,
    Int64,
    PushSource,
    String,
    UnixTimestamp,
    ValueType,
)

PROJECT = "server_test"
#: Event time of the online rows: recent, so the 30-day ttl keeps them PRESENT.
EVENT_TIME = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
#: Event time of the Parquet rows (for materialize).
SOURCE_TIME = datetime(2024, 1, 5, 12, 0, 0, tzinfo=UTC)
PRICES = {"crude_oil_wti": (78.25, 1.5, 1200), "brent": (82.5, -0.25, 900)}


@dataclass
class Repo:
    """The built repo: its directory and an open store."""

    path: Path
    store: FeatureStore


def _prices_table(codes: list[str], when: datetime) -> pa.Table:
    ts = pa.array([when] * len(codes), pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "commodity_code": codes,
            "current_price": [PRICES.get(c, (1.0, 0.0, 0))[0] for c in codes],
            "price_change_24h": [PRICES.get(c, (1.0, 0.0, 0))[1] for c in codes],
            "volume_24h": pa.array([PRICES.get(c, (1.0, 0.0, 0))[2] for c in codes], pa.int64()),
            "event_timestamp": ts,
            "created": ts,
        }
    )


def _write_yaml(path: Path) -> None:
    (path / "feature_store.yaml").write_text(
        f"project: {PROJECT}\n"
        "registry:\n  path: data/registry.db\n  cache_ttl_seconds: 1\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\n"
        "offline_store:\n  type: duckdb\n"
        "feature_server:\n  max_entities_per_request: 500\n  max_body_bytes: 200000\n"
    )


def build_repo(path: Path) -> Repo:
    """Create, apply and fill the repo under ``path``."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    _write_yaml(path)
    pq.write_table(_prices_table(["crude_oil_wti", "brent", "gold"], SOURCE_TIME), path / "data" / "prices.parquet")
    pq.write_table(_stations_table(SOURCE_TIME), path / "data" / "stations.parquet")
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    station = Entity(name="station", join_keys=["station_id"], value_type=ValueType.INT64)
    prices_src = FileSource(
        name="prices_file", path="data/prices.parquet", timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )  # fmt: skip
    prices = FeatureView(
        name="commodity_price_features",
        entities=[commodity],
        ttl=timedelta(days=30),
        schema=[
            Field(name="current_price", dtype=Float64),
            Field(name="price_change_24h", dtype=Float64),
            Field(name="volume_24h", dtype=Int64),
        ],
        source=prices_src,
    )
    push = PushSource(name="price_push", batch_source=prices_src)
    live = FeatureView(
        name="live_prices",
        entities=[commodity],
        ttl=timedelta(days=30),
        schema=[Field(name="current_price", dtype=Float64), Field(name="volume_24h", dtype=Int64)],
        source=push,
    )
    station_src = FileSource(name="stations_file", path="data/stations.parquet", timestamp_field="event_timestamp")
    stations = FeatureView(
        name="station_features",
        entities=[station],
        ttl=timedelta(0),
        schema=[
            Field(name="name", dtype=String),
            Field(name="active", dtype=Bool),
            Field(name="elevation", dtype=Int32),
            Field(name="readings", dtype=Array(Float64)),
            Field(name="code", dtype=Bytes),
            Field(name="installed", dtype=UnixTimestamp),
        ],
        source=station_src,
    )
    service = FeatureService(name="price_model", features=[prices[["current_price"]], stations[["name"]]])
    store = FeatureStore(repo_path=path)
    store.apply([commodity, station, prices_src, push, prices, live, station_src, stations, service])
    _fill(store)
    return Repo(path, store)


def _stations_table(when: datetime) -> pa.Table:
    ts = pa.array([when] * 2, pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "station_id": pa.array([1, 2], pa.int64()),
            "name": ["JFK", "SEA"],
            "active": [True, False],
            "elevation": pa.array([4, 131], pa.int32()),
            "readings": pa.array([[1.5, 2.5], []], pa.list_(pa.float64())),
            "code": [b"\x00\x01", b"z"],
            "installed": pa.array([datetime(2020, 5, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
            "event_timestamp": ts,
        }
    )


def _fill(store: FeatureStore) -> None:
    snapshot = store.snapshot(allow_cache=False)
    online = store.online_store
    online.write(PROJECT, snapshot.feature_view("commodity_price_features"), _prices_table(list(PRICES), EVENT_TIME))
    online.write(PROJECT, snapshot.feature_view("station_features"), _stations_table(EVENT_TIME))
