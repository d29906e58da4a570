"""The importer's mapping and report on hand-built Feast registry messages (fast; no Feast needed).

The messages are built with Ladle's own descriptors, whose field numbers test_import_protos.py
checks against Feast's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ladle import FeatureStore, FileSource
from ladle.cli.main import cli
from ladle.errors import ConfigError
from ladle.feast_import import map_registry
from ladle.feast_import._proto import message_class

INT64, DOUBLE = 4, 5
MAP_TYPE = 22  # BYTES_SET: a value type Ladle has no dtype for
STRUCT = 34


def _registry(project: str = "p") -> Any:
    registry = message_class("Registry")()
    entity = registry.entities.add().spec
    entity.name, entity.join_key, entity.value_type, entity.project = "driver", "driver_id", INT64, project
    source = registry.data_sources.add()
    source.name, source.type, source.timestamp_field, source.project = "trips", 1, "ts", project
    source.file_options.uri = "data/trips.parquet"
    source.file_options.file_format.parquet_format = b""
    return registry


def _view(registry: Any, name: str, value_type: int = DOUBLE, project: str = "p") -> Any:
    spec = registry.feature_views.add().spec
    spec.name, spec.project = name, project
    spec.entities.append("driver")
    key = spec.entity_columns.add()
    key.name, key.value_type = "driver_id", INT64
    feature = spec.features.add()
    feature.name, feature.value_type = "conv_rate", value_type
    spec.batch_source.CopyFrom(registry.data_sources[0])
    spec.ttl.seconds = 3600
    spec.online = True
    return spec


def test_what_cannot_be_mapped_is_reported_with_its_reason() -> None:
    registry = _registry()
    _view(registry, "good")
    _view(registry, "mapped_type", value_type=MAP_TYPE)
    _view(registry, "transformed").feature_transformation = b"\x0a\x00"
    warehouse = registry.data_sources.add()
    warehouse.name, warehouse.type, warehouse.project = "bq", 2, "p"
    delta = registry.data_sources.add()
    delta.name, delta.type, delta.project, delta.timestamp_field = "delta", 1, "p", "ts"
    delta.file_options.uri = "d"
    delta.file_options.file_format.delta_format = b""
    service = registry.feature_services.add().spec
    service.name, service.project = "svc", "p"
    for view in ("good", "transformed"):
        service.features.add().feature_view_name = view
    report = map_registry(registry)
    reasons = {(s.kind, s.name): s.reason for s in report.skipped}
    assert reasons[("feature view", "mapped_type")].endswith("value type 22 has no Ladle dtype")
    assert "transformation" in reasons[("feature view", "transformed")]
    assert reasons[("data source", "bq")] == "source type BATCH_BIGQUERY has no Ladle equivalent"
    assert "delta_format" in reasons[("data source", "delta")]
    assert [str(n) for n in report.notes] == ["feature service 'svc': imported without ['transformed'] (not imported)"]
    assert list(report.imported) == [
        ("entity", "driver"),
        ("data_source", "trips"),
        ("feature_view", "good"),
        ("feature_service", "svc"),
    ]
    good = next(o for o in report.objects if o.name == "good")
    assert good.to_spec()["ttl_seconds"] == 3600


def test_struct_fields_take_their_members_from_feasts_tag() -> None:
    registry = _registry()
    typed = _view(registry, "typed", value_type=STRUCT).features[0]
    typed.tags["feast:struct_schema"] = json.dumps({"name": "STRING", "geo": {"lat": "DOUBLE"}})
    typed.tags["kept"] = "yes"
    _view(registry, "untyped", value_type=STRUCT)
    report = map_registry(registry)
    view = next(o for o in report.objects if o.name == "typed")
    field = view.features[0]
    assert field.dtype.name == "Struct(name: String, geo: Struct(lat: Float64))"
    assert field.tags == {"kept": "yes"}  # the schema tag became the dtype
    reasons = {(s.kind, s.name): s.reason for s in report.skipped}
    assert "a Struct without its 'feast:struct_schema' tag" in reasons[("feature view", "untyped")]


def _odfv(registry: Any, name: str, body: str) -> Any:
    spec = registry.on_demand_feature_views.add().spec
    spec.name, spec.project, spec.mode = name, "p", "pandas"
    out = spec.features.add()
    out.name, out.value_type = "doubled", DOUBLE
    entry = spec.sources.add()
    entry.key = "good"
    entry.value.feature_view_projection.feature_view_name = "good"
    spec.feature_transformation.user_defined_function.body_text = body
    return spec


def test_on_demand_views_come_from_their_text_or_are_reported() -> None:
    registry = _registry()
    _view(registry, "good")
    ok = "@on_demand_feature_view(sources=[good], schema=[])\ndef doubled(df: pd.DataFrame) -> pd.DataFrame:\n"
    ok += "    return pd.DataFrame({'doubled': df['conv_rate'] * 2})\n"
    _odfv(registry, "doubled", ok)
    _odfv(registry, "helper", "def helper(df):\n    return my_helper(df)\n")
    _odfv(registry, "pickled_only", "")
    _odfv(registry, "substrait", ok).feature_transformation.substrait_transformation = b"\x0a\x00"
    report = map_registry(registry)
    reasons = {(s.kind, s.name): s.reason for s in report.skipped}
    assert "uses ['my_helper'], which its stored text does not define" in reasons[("on-demand feature view", "helper")]
    assert "only the pickle" in reasons[("on-demand feature view", "pickled_only")]
    assert "Substrait" in reasons[("on-demand feature view", "substrait")]
    odfv = next(o for o in report.objects if o.name == "doubled")
    assert odfv.udf.imports == "import pandas as pd\n"
    assert odfv.udf.source.startswith("def doubled(df: pd.DataFrame)")
    import pandas as pd

    assert odfv.udf.load()(pd.DataFrame({"conv_rate": [1.5]}))["doubled"].tolist() == [3.0]


def test_label_views_other_than_last_write_wins_are_reported() -> None:
    registry = _registry()
    for name, policy in (("newest", 0), ("voted", 2)):
        spec = registry.label_views.add().spec
        spec.name, spec.project, spec.conflict_policy, spec.labeler_field = name, "p", policy, "who"
        spec.entities.append("driver")
        label = spec.features.add()
        label.name, label.value_type = "conv_rate", DOUBLE
        spec.source.CopyFrom(registry.data_sources[0])
    report = map_registry(registry)
    reasons = {(s.kind, s.name): s.reason for s in report.skipped}
    assert "conflict policy MAJORITY_VOTE" in reasons[("label view", "voted")]
    view = next(o for o in report.objects if o.name == "newest")
    assert view.tags == {"ladle.io/feast-label-view": "labeler_field=who"}
    assert view.feature_names == ["conv_rate"]


def test_a_registry_with_several_projects_needs_one_chosen() -> None:
    registry = _registry("a")
    other = registry.entities.add().spec
    other.name, other.join_key, other.project = "rider", "rider_id", "b"
    with pytest.raises(ConfigError, match="holds projects a, b; choose one with --project"):
        map_registry(registry)
    assert [o.name for o in map_registry(registry, "b").objects] == ["rider"]
    with pytest.raises(ConfigError, match="has no project 'c'"):
        map_registry(registry, "c")


def _import(repo: Path, feast_file: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["-c", str(repo), "import-feast", str(feast_file), *args])


def test_dry_run_writes_nothing_and_one_bad_object_writes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text("project: p\nregistry: data/registry.db\n")
    trips = {"driver_id": [1], "conv_rate": [0.5], "ts": pa.array([0], pa.timestamp("s"))}
    pq.write_table(pa.table(trips), repo / "data" / "trips.parquet")
    registry = _registry()
    _view(registry, "good")
    _view(registry, "bad_column").features[0].name = "not_in_the_file"
    feast_file = tmp_path / "registry.db"
    feast_file.write_bytes(registry.SerializeToString())
    store = FeatureStore(repo_path=repo)
    try:
        failed = _import(repo, feast_file)
        # the view whose column the file lacks fails validation: nothing at all is written
        assert failed.exit_code == 1 and "not_in_the_file" in failed.output, failed.output
        assert store.list_entities() == []
        del registry.feature_views[1]
        feast_file.write_bytes(registry.SerializeToString())
        dry = _import(repo, feast_file, "--dry-run", "-o", "json")
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.output)["apply"]["applied"] is False
        assert store.list_feature_views() == []
        done = _import(repo, feast_file)
        assert done.exit_code == 0, done.output
        store.refresh_registry()
        assert [v.name for v in store.list_feature_views()] == ["good"]
    finally:
        store.close()


def test_ladles_own_registry_is_not_taken_for_feasts(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text("project: p\nregistry: data/registry.db\n")
    store = FeatureStore(repo_path=repo)
    store.list_entities()  # creates Ladle's SQLite registry
    store.close()
    result = _import(repo, repo / "data" / "registry.db")
    assert result.exit_code == 1
    assert "not a Feast SQL registry" in result.output


def test_paths_relative_to_the_feast_repo(tmp_path: Path) -> None:
    feast_repo, repo = tmp_path / "feast_repo", tmp_path / "ladle_repo"
    (feast_repo / "data").mkdir(parents=True)
    repo.mkdir()
    (repo / "feature_store.yaml").write_text("project: p\nregistry: data/registry.db\n")
    trips = {"driver_id": [1], "conv_rate": [0.5], "ts": pa.array([0], pa.timestamp("s"))}
    pq.write_table(pa.table(trips), feast_repo / "data" / "trips.parquet")
    registry = _registry()
    _view(registry, "good")
    feast_file = feast_repo / "data" / "registry.db"
    feast_file.write_bytes(registry.SerializeToString())
    # relative to the Ladle repo the file is not there: validation says so, nothing is written
    missing = _import(repo, feast_file)
    assert missing.exit_code == 1 and "trips.parquet" in missing.output, missing.output
    done = _import(repo, feast_file, "--paths-relative-to", str(feast_repo))
    assert done.exit_code == 0, done.output
    store = FeatureStore(repo_path=repo)
    try:
        source = store.get_data_source("trips")
        assert isinstance(source, FileSource)
        assert source.path == str(feast_repo.resolve() / "data" / "trips.parquet")
        assert store.get_feature_view("good").batch_source.path == source.path
    finally:
        store.close()
