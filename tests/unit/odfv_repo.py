"""A real feature repo with on-demand feature views, written as files and applied through the loader.

The ODFV functions live in the repo's ``.py`` file (as a user's would), so the registry keeps their
source and a server compiles them from it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ladle import FeatureStore
from ladle.repo.loader import load_repo

PROJECT = "odfv_test"
SOURCE_TIME = datetime(2024, 1, 5, 12, 0, 0, tzinfo=UTC)
PRICES = {"crude_oil_wti": 78.25, "brent": 82.5, "gold": 2050.0}

DEFINITIONS = """
from datetime import timedelta

import pandas as pd

from ladle import (
    Bool, Entity, FeatureView, Field, FileSource, Float64, Int64, RequestSource, ValueType,
    on_demand_feature_view,
)

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
prices_src = FileSource(name="prices_file", path="data/prices.parquet", timestamp_field="event_timestamp")
prices = FeatureView(
    name="prices",
    entities=[commodity],
    ttl=timedelta(0),
    schema=[Field(name="current_price", dtype=Float64), Field(name="volume_24h", dtype=Int64)],
    source=prices_src,
)
order = RequestSource(name="order", schema=[Field(name="quantity", dtype=Float64)])


@on_demand_feature_view(
    sources=[prices, order],
    schema=[Field(name="order_value", dtype=Float64), Field(name="price_x2", dtype=Float64)],
)
def order_value(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["order_value"] = inputs["current_price"] * inputs["quantity"]
    out["price_x2"] = inputs["prices__current_price"] * 2
    return out


@on_demand_feature_view(
    sources=[prices[["current_price"]], order],
    schema=[Field(name="order_value_py", dtype=Float64)],
    mode="python",
)
def order_value_py(inputs: dict) -> dict:
    pairs = zip(inputs["current_price"], inputs["quantity"])
    return {"order_value_py": [None if p is None else p * q for p, q in pairs]}


@on_demand_feature_view(
    sources=[order],
    schema=[Field(name="big_order", dtype=Bool)],
    mode="python",
    singleton=True,
)
def big_order(row: dict) -> dict:
    return {"big_order": row["quantity"] > 100}
"""


def prices_table(when: datetime = SOURCE_TIME) -> pa.Table:
    """The Parquet rows of the ``prices`` view."""
    codes = list(PRICES)
    return pa.table(
        {
            "commodity_code": codes,
            "current_price": [PRICES[c] for c in codes],
            "volume_24h": pa.array([1000 * (i + 1) for i in range(len(codes))], pa.int64()),
            "event_timestamp": pa.array([when] * len(codes), pa.timestamp("us", tz="UTC")),
        }
    )


def build_odfv_repo(path: Path, definitions: str = DEFINITIONS) -> FeatureStore:
    """Write the repo under ``path``, apply it like ``ladle apply`` and materialize it; an open store."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "feature_store.yaml").write_text(
        f"project: {PROJECT}\n"
        "registry:\n  path: data/registry.db\n  cache_ttl_seconds: 1\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\n"
        "offline_store:\n  type: duckdb\n"
    )
    pq.write_table(prices_table(), path / "data" / "prices.parquet")
    (path / "definitions.py").write_text(definitions)
    store = FeatureStore(repo_path=path)
    store.apply(load_repo(path), partial=False)
    store.materialize(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 10, tzinfo=UTC))
    return store
