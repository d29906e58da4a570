"""Feast repos load unchanged: ``from feast import ...`` gives Ladle's definitions, and what Ladle
cannot honour is refused with one line that names it."""

from __future__ import annotations

import shutil
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ladle import Entity, FeatureService, FeatureView, FileSource, KafkaSource, PushSource
from ladle.cli.main import cli
from ladle.errors import ConfigError, RepoError
from ladle.feast_shim import feast_names
from ladle.repo.loader import load_repo

FEAST_REPO = Path(__file__).resolve().parents[1] / "e2e" / "feast_repo"
YAML = (
    "project: shim\nprovider: local\nregistry: data/registry.db\nonline_store: {type: sqlite, path: data/online.db}\n"
)
HEAD = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64
driver = Entity(name="driver", join_keys=["driver_id"])
src = FileSource(name="src", path="data/x.parquet", timestamp_field="ts")
"""


def test_the_feast_written_repo_gives_ladle_definitions() -> None:
    contents = load_repo(FEAST_REPO)
    assert {e.name for e in contents.entities} == {"commodity", "country", "location"}
    assert {v.name for v in contents.feature_views} == {
        "commodity_price_features",
        "commodity_price_stream",
        "economic_features",
        "weather_features",
    }
    ladle_kinds = (Entity, FileSource, PushSource, KafkaSource, FeatureView, FeatureService)
    assert all(isinstance(o, ladle_kinds) for o in contents.objects())
    commodity = next(e for e in contents.entities if e.name == "commodity")
    assert (
        commodity.to_spec()
        == Entity(
            name="commodity",
            join_keys=["commodity_code"],
            value_type=commodity.value_type,
            description="A traded commodity, e.g. crude_oil_wti, brent, natural_gas, gold.",
            owner="market-data@commodity-analytics",
            tags={"domain": "markets"},
        ).to_spec()
    )
    # value_type left out in Feast's style: inferred from the source at apply
    assert next(e for e in contents.entities if e.name == "country").value_type is None
    service = contents.feature_services[0]
    assert [(p.view_name, p.features) for p in service.projections][1] == (
        "economic_features",
        ("gdp_growth", "inflation_rate"),
    )
    prices = next(v for v in contents.feature_views if v.name == "commodity_price_features")
    assert prices.source.name == "commodity_prices_push"
    assert prices.batch_source.to_spec()["file_format"] == "parquet"


def test_feast_modules_are_restored_after_a_load(tmp_path: Path) -> None:
    # Stands for a real Feast imported by other code (the real one is tested in test_feast_coexist).
    sentinel = types.ModuleType("feast")
    sentinel_types = types.ModuleType("feast.types")
    saved = {n: sys.modules.get(n) for n in ("feast", "feast.types")}
    sys.modules["feast"], sys.modules["feast.types"] = sentinel, sentinel_types
    try:
        load_repo(FEAST_REPO)
        assert sys.modules["feast"] is sentinel
        assert sys.modules["feast.types"] is sentinel_types
        assert "feast.data_format" not in sys.modules
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    assert not any(isinstance(f, type) and "feast" in f.__module__ for f in sys.meta_path)


def test_push_mode_is_the_push_argument_ladle_takes(tmp_path: Path) -> None:
    with feast_names():
        from feast.data_source import PushMode
    from ladle.retrieval.push import PUSH_MODES

    assert [m for m in PushMode if m in PUSH_MODES] == list(PushMode)
    assert PushMode.ONLINE_AND_OFFLINE == "online_and_offline"


def test_the_finder_is_gone_after_the_block() -> None:
    before = list(sys.meta_path)
    with feast_names():
        import feast

        assert feast.FeatureView.__module__ == "ladle.feast_shim.definitions"
    assert sys.meta_path == before
    assert "feast" not in sys.modules or sys.modules["feast"] is not feast


REFUSED = {
    "warehouse source": (
        "from feast import BigQuerySource\nBigQuerySource(table='p.d.t', timestamp_field='ts')\n",
        "Ladle does not support BigQuerySource",
    ),
    "set dtype": ("from feast.types import Set\n", "Ladle does not support feast.types.Set"),
    "label view policy": (
        "from feast import ConflictPolicy, LabelView, PushSource\n"
        "LabelView(name='l', source=PushSource(name='p', batch_source=src), entities=[driver],\n"
        "          conflict_policy=ConflictPolicy.MAJORITY_VOTE)\n",
        "Ladle does not support conflict_policy=MAJORITY_VOTE on LabelView 'l'",
    ),
    "delta files": (
        "from feast.data_format import DeltaFormat\n"
        "FileSource(name='d', path='x', timestamp_field='ts', file_format=DeltaFormat())\n",
        "Ladle does not support file_format DeltaFormat (file source 'd')",
    ),
    "spark transformation": (
        "from feast import BatchFeatureView\n"
        "def f(df):\n    return df\n"
        "BatchFeatureView(name='b', source=src, entities=[driver], udf=f, mode='spark')\n",
        "Ladle does not support a BatchFeatureView with a transformation ('b', mode='spark')",
    ),
    "vector index": (
        "Field(name='emb', dtype=Float64, vector_index=True)\n",
        "Ladle does not support vector_index on field 'emb'",
    ),
    "kinesis": (
        "from feast import KinesisSource\nKinesisSource(name='k')\n",
        "Ladle does not support KinesisSource",
    ),
    "unknown module": (
        "from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource\n",
        "Ladle's Feast compatibility provides no module feast.infra.offline_stores.contrib",
    ),
    "unknown name": ("from feast import Frobnicator\n", "Ladle does not support feast.Frobnicator"),
    "versioned view": (
        "FeatureView(name='v', source=src, entities=[driver], version='v2')\n",
        "Ladle does not support version='v2' on feature view 'v'",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unsupported_feast_definitions_are_refused_in_one_line(tmp_path: Path, case: str) -> None:
    code, message = REFUSED[case]
    (tmp_path / "feature_store.yaml").write_text(YAML)
    (tmp_path / "repo.py").write_text(textwrap.dedent(HEAD) + code)
    with pytest.raises(RepoError) as caught:
        load_repo(tmp_path)
    assert message in str(caught.value)
    assert str(caught.value).startswith("cannot load feature repo: repo.py:")
    assert "\n" not in str(caught.value)


def test_ladle_apply_of_a_refused_repo_exits_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text(YAML)
    (tmp_path / "repo.py").write_text(textwrap.dedent(HEAD) + REFUSED["set dtype"][0])
    result = CliRunner().invoke(cli, ["-c", str(tmp_path), "apply"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Ladle does not support feast.types.Set" in lines[0]
    assert "Traceback" not in result.output


def test_a_feast_repo_plans_like_the_same_repo_written_for_ladle(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(FEAST_REPO, repo)
    result = CliRunner().invoke(cli, ["-c", str(repo), "plan", "--skip-source-validation"])
    assert result.exit_code == 0, result.output
    for name in ("commodity_price_features", "price_model_v1", "commodity_prices_push", "country"):
        assert name in result.output


@pytest.mark.feast_client
def test_every_top_level_feast_yaml_key_loads(feast_introspection: dict[str, Any]) -> None:
    from ladle.config import load_config

    keys = feast_introspection["yaml_keys"]
    assert {"project", "registry", "online_store", "offline_store", "auth"} <= set(keys)
    values: dict[str, Any] = {
        "project": "p",
        "provider": "local",
        "entity_key_serialization_version": 3,
        "coerce_tz_aware": True,
        "project_description": "a Feast project",
        "registry": "data/registry.db",
        "online_store": {"type": "sqlite"},
        "offline_store": {"type": "file"},
        "auth": {"type": "no_auth"},
    }
    refused = []
    for key in keys:
        try:
            load_config({"project": "p", key: values.get(key, {})}, ".")
        except ConfigError as exc:
            refused.append(f"{key}: {exc}")
    assert not refused, refused


ACCEPTED = """
from datetime import timedelta
from feast import BatchFeatureView, Entity, FeatureService, FeatureView, Field, FileSource, Project
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.types import Float32, Int64

project = Project(name="shim", description="the feast init template's habits")
driver = Entity(name="driver", join_keys=["driver_id"])
src = FileSource(name="driver_stats", path="data/driver_stats.parquet", timestamp_field="event_timestamp",
                 created_timestamp_column="created")
conv = Field(name="conv_rate", dtype=Float32)
assert isinstance(conv, Field)
stats = FeatureView(name="driver_hourly_stats", entities=[driver], ttl=timedelta(days=1),
                    schema=[conv, Field(name="avg_daily_trips", dtype=Int64, description="trips")],
                    source=src, online=True, tags={"team": "drivers"}, enable_validation=True, version="latest")
batch = BatchFeatureView(name="driver_batch", entities=[driver], schema=[conv], source=src)
service = FeatureService(name="driver_activity", features=[stats[["conv_rate"]], batch],
                         logging_config=LoggingConfig(destination=FileLoggingDestination(path="data")))
"""


def test_the_template_habits_ladle_accepts_load_as_ladle_definitions(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text(YAML)
    (tmp_path / "repo.py").write_text(ACCEPTED)
    contents = load_repo(tmp_path)
    assert [e.name for e in contents.entities] == ["driver"]
    assert contents.entities[0].value_type is None  # inferred from the source at apply
    views = {v.name: v for v in contents.feature_views}
    assert set(views) == {"driver_hourly_stats", "driver_batch"}
    assert isinstance(views["driver_batch"], FeatureView)
    assert views["driver_hourly_stats"].features[1].description == "trips"
    service = contents.feature_services[0]
    assert service.logging_config is not None and service.logging_config.sample_rate == 1.0  # logged, as in Feast
    assert service.logging_config.destination.to_spec()["path"] == "data"  # type: ignore[union-attr]
    assert [(p.view_name, p.features) for p in service.projections] == [
        ("driver_hourly_stats", ("conv_rate",)),
        ("driver_batch", ("conv_rate",)),
    ]
