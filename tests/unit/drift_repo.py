"""A small real repo for the monitoring tests: SQL registry, DuckDB (Parquet) offline, SQLite or Redis online.

Definitions::

    sensor (sensor_id: Int64)
    readings.parquet → readings (ttl 0): level Float64, count Int64, kind String
                                          tags: ladle.freshness_slo=1h
    push source readings_push (batch source readings.parquet)
    feature service readings_model: readings[level, count, kind]

Rows come from :func:`reading_rows`: seeded random values (level ~ N(mu, 1), count ~ Poisson(lam),
kind from a fixed mix) so a test can write a baseline period, an unshifted window and a shifted one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ladle import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    PushSource,
    String,
    ValueType,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
KINDS = ("alpha", "beta", "gamma", "delta")

sensor = Entity(name="sensor", join_keys=["sensor_id"], value_type=ValueType.INT64)
readings_source = FileSource(name="readings_src", path="data/readings", timestamp_field="event_timestamp")
readings_push = PushSource(name="readings_push", batch_source=readings_source)
readings = FeatureView(
    name="readings",
    source=readings_push,
    entities=[sensor],
    schema=[Field(name="level", dtype=Float64), Field(name="count", dtype=Int64), Field(name="kind", dtype=String)],
    tags={"ladle.freshness_slo": "1h"},
)
model = FeatureService(name="readings_model", features=[readings])
OBJECTS: list[Any] = [sensor, readings_source, readings_push, readings, model]


def reading_rows(
    start: datetime,
    n: int,
    seed: int,
    mu: float = 0.0,
    lam: float = 5.0,
    kind_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1),
    sensors: int = 50,
    step: timedelta = timedelta(minutes=1),
) -> pa.Table:
    """``n`` rows from ``start`` every ``step``, round-robin over ``sensors`` sensors, seeded."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "sensor_id": pa.array([i % sensors for i in range(n)], pa.int64()),
            "event_timestamp": pa.array([start + i * step for i in range(n)], TS),
            "level": pa.array(rng.normal(mu, 1.0, n), pa.float64()),
            "count": pa.array(rng.poisson(lam, n), pa.int64()),
            "kind": pa.array(rng.choice(KINDS, size=n, p=kind_weights).tolist(), pa.string()),
        }
    )


def build(root: Path, rows: pa.Table, online: dict[str, Any] | None = None) -> FeatureStore:
    """Write ``rows`` as the first file of the source, configure and apply the repo in ``root``.

    The online store is SQLite unless ``online`` gives another one's config.
    """
    (root / "data" / "readings").mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, root / "data" / "readings" / "part-0.parquet")
    config: dict[str, Any] = {
        "project": f"drift_{root.name[-12:]}".replace("-", "_"),
        "registry": {"path": "data/registry.db", "cache_mode": "sync", "cache_ttl_seconds": 0},
        "online_store": online or {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {"type": "duckdb"},
    }
    (root / "feature_store.yaml").write_text(yaml.safe_dump(config))
    store = FeatureStore(repo_path=root)
    store.apply(OBJECTS)
    return store


def monitor_sample(store: FeatureStore, name: str, **labels: str) -> float | None:
    """The value a scrape of the monitor metrics (from ``store``'s stored reports) shows for ``name{labels}``."""
    from ladle.monitor.report_metrics import ReportMetrics

    collector = ReportMetrics(cache_seconds=0)
    collector.watch(store.config.registry, store.project, store.repo_path)
    try:
        for family in collector.collect():
            for sample in family.samples:
                if sample.name == name and sample.labels == {"project": store.project, **labels}:
                    return float(sample.value)
    finally:
        collector.close()
    return None
