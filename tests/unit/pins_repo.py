"""A small real repo whose feature view changes between applies, for the pin and A/B tests.

SQLite registry and online store, Parquet sources, DuckDB offline. ``prices`` has three versions:

* v1: ``current_price`` (Float64), ``volume`` (Int64); ttl one day; source ``prices_v1.parquet``;
* v2: adds ``spread``; ttl one hour; source ``prices_v2.parquet`` (other prices);
* ``additive``: v1 plus ``spread``, same ttl and source (a change no pin minds).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, Int64, ValueType

PROJECT = "pins_test"
#: Event time of the Parquet rows.
SOURCE_TIME = datetime(2024, 1, 5, 12, 0, 0, tzinfo=UTC)
#: Event time of the online rows: two hours ago, inside v1's ttl (one day), outside v2's (one hour).
ONLINE_TIME = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
V1_PRICES = {"wti": 70.0, "brent": 75.0}
V2_PRICES = {"wti": 90.0, "brent": 95.0}
ONLINE_PRICES = {"wti": 78.0, "brent": 82.0}

COMMODITY = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)


def write_repo(path: Path, redis: str | None = None, project: str = PROJECT, registry: str = "") -> FeatureStore:
    """The yaml and both source files under ``path``; an open store (nothing applied).

    The online store is SQLite, or the Redis server at ``redis`` (``host:port``) when given; the
    registry SQLite, or the database at the SQLAlchemy URL ``registry``.
    """
    (path / "data").mkdir(parents=True, exist_ok=True)
    online = f"  type: redis\n  connection_string: '{redis}'\n" if redis else "  type: sqlite\n  path: data/online.db\n"
    (path / "feature_store.yaml").write_text(
        f"project: {project}\n"
        f"registry:\n  path: {registry or 'data/registry.db'}\n  cache_ttl_seconds: 0\n"
        f"online_store:\n{online}"
        "offline_store:\n  type: duckdb\n"
    )
    # v1's file has a spread column too (v1 does not declare it; the additive version does).
    pq.write_table(_table(V1_PRICES, SOURCE_TIME, spread=True), path / "data" / "prices_v1.parquet")
    pq.write_table(_table(V2_PRICES, SOURCE_TIME, spread=True), path / "data" / "prices_v2.parquet")
    return FeatureStore(repo_path=path)


def _table(prices: dict[str, float], when: datetime, *, spread: bool) -> pa.Table:
    codes = list(prices)
    columns: dict[str, pa.Array] = {
        "commodity_code": pa.array(codes),
        "current_price": pa.array([prices[c] for c in codes], pa.float64()),
        "volume": pa.array([100 + i for i in range(len(codes))], pa.int64()),
        "event_timestamp": pa.array([when] * len(codes), pa.timestamp("us", tz="UTC")),
    }
    if spread:
        columns["spread"] = pa.array([0.5] * len(codes), pa.float64())
    return pa.table(columns)


def _source(version: str) -> FileSource:
    return FileSource(
        name=f"prices_{version}", path=f"data/prices_{version}.parquet", timestamp_field="event_timestamp"
    )


def prices_view(kind: str) -> FeatureView:
    """``prices`` as defined by ``kind``: ``v1``, ``v2``, ``additive``, ``no_volume`` or ``short_ttl``."""
    features = [Field(name="current_price", dtype=Float64), Field(name="volume", dtype=Int64)]
    ttl, source = timedelta(days=1), _source("v1")
    if kind in ("v2", "additive"):
        features.append(Field(name="spread", dtype=Float64))
    if kind == "v2":
        ttl, source = timedelta(hours=1), _source("v2")
    if kind == "no_volume":
        features = features[:1]
    if kind == "short_ttl":
        ttl = timedelta(hours=1)
    return FeatureView(name="prices", entities=[COMMODITY], ttl=ttl, schema=features, source=source)


def fill_online(store: FeatureStore) -> None:
    """Write the online rows (``ONLINE_PRICES`` at ``ONLINE_TIME``) through the online store protocol."""
    view = store.snapshot(allow_cache=False).feature_view("prices")
    table = _table(ONLINE_PRICES, ONLINE_TIME, spread="spread" in view.feature_names)
    store.online_store.write(store.project, view, table)
