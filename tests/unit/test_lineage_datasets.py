"""Lineage dataset namespaces name the store and names name the table, for every offline and online store kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.config import load_config
from ladle.definitions.sources import DorisSource, IcebergSource
from ladle.monitor.lineage_datasets import offline_dataset, online_dataset

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
FIELDS = [Field(name="price", dtype=Float64)]


def view(source: Any) -> FeatureView:
    return FeatureView(name="prices", source=source, entities=[commodity], schema=FIELDS)


def config(tmp_path: Path, **blocks: Any) -> Any:
    return load_config({"project": "shop", **blocks}, tmp_path)


def test_file_source_on_the_parquet_store(tmp_path: Path) -> None:
    source = FileSource(name="ticks", path="data/ticks.parquet", timestamp_field="ts")
    d = offline_dataset(config(tmp_path), view(source))
    assert (d.namespace, d.name) == ("file", str(tmp_path / "data" / "ticks.parquet"))
    assert d.fields == (("commodity_code", "String"), ("price", "Float64"), ("ts", "UnixTimestamp"))


def test_iceberg_tables(tmp_path: Path) -> None:
    iceberg = {"type": "iceberg", "catalog": {"type": "sql", "uri": "sqlite:///c.db"}, "namespace": "lake"}
    cfg = config(tmp_path, offline_store=iceberg)
    named = offline_dataset(cfg, view(IcebergSource(name="t", table="raw.ticks", timestamp_field="ts")))
    assert (named.namespace, named.name) == ("iceberg://ladle", "raw.ticks")
    backed = offline_dataset(cfg, view(FileSource(name="ticks", path="x.parquet", timestamp_field="ts")))
    assert (backed.namespace, backed.name) == ("iceberg://ladle", "lake.ticks")


@pytest.mark.parametrize(
    ("dialect", "port", "namespace"),
    [("mysql", None, "mysql://db.internal:3306"), ("doris", 9031, "doris://db.internal:9031")],
)
def test_mysql_protocol_tables(tmp_path: Path, dialect: str, port: int | None, namespace: str) -> None:
    block = {"type": dialect, "host": "db.internal", "database": "features", **({"port": port} if port else {})}
    cfg = config(tmp_path, offline_store=block)
    d = offline_dataset(cfg, view(DorisSource(name="t", table="ticks", timestamp_field="ts")))
    assert (d.namespace, d.name) == (namespace, "features.ticks")


@pytest.mark.parametrize(
    ("connection", "namespace"),
    [
        ("redis.internal:6380,ssl=true", "redis://redis.internal:6380"),
        ("redis://:pw@cache:6379/0", "redis://cache:6379"),
        ("localhost", "redis://localhost:6379"),
    ],
)
def test_redis_online_tables(tmp_path: Path, connection: str, namespace: str) -> None:
    cfg = config(tmp_path, online_store={"type": "redis", "connection_string": connection})
    d = online_dataset(cfg, view(FileSource(name="ticks", path="x.parquet", timestamp_field="ts")))
    assert (d.namespace, d.name) == (namespace, "shop.prices")
    assert "pw" not in d.namespace


def test_every_lineage_job_and_metric_is_documented() -> None:
    from ladle.monitor.lineage_datasets import JOB_TYPES

    text = (Path(__file__).resolve().parents[2] / "docs" / "lineage.md").read_text()
    missing = [job for job in JOB_TYPES if f"`ladle.{job}`" not in text]
    missing += [m for m in ("ladle_lineage_events_total", "ladle_lineage_emit_failures_total") if m not in text]
    assert not missing, f"docs/lineage.md does not mention {missing}"
