"""``ladle import-feast`` against registries written by the real Feast 0.67 (file, SQL on SQLite, SQL on
PostgreSQL): every object Feast reads back is compared, field by field, with what Ladle imported,
saved datasets (made with Feast's own ``create_saved_dataset``) and their rows included."""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from feast_compat.conftest import ladle_paths, run_feast
from ladle import FeatureStore, KafkaSource, OnDemandFeatureView, RequestSource, StreamFeatureView
from ladle.cli.main import cli
from ladle.definitions import DataSource, FileSource, PushSource
from ladle.retrieval.saved import read_saved_dataset

pytestmark = pytest.mark.feast_client

HERE = Path(__file__).resolve().parent
#: The inputs the ODFVs' functions run on (the same as feast_dump.py's SAMPLE).
SAMPLE = {"price": [2.0, 4.0], "fx_rate": [0.5, 3.0], "gdp_growth": [1.5, -2.0]}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _data(repo: Path) -> None:
    data = repo / "data"
    data.mkdir(parents=True, exist_ok=True)
    recent = pa.array([[1.0, 2.0]], pa.list_(pa.float32()))
    prices = {"commodity_code": ["wti"], "price": [70.0], "volume": [10], "recent": recent}
    pq.write_table(pa.table({**prices, "event_timestamp": [T0], "created": [T0]}), data / "prices.parquet")
    macro = {"country_code": ["US"], "gdp_growth": [2.0], "event_timestamp": [T0]}
    pq.write_table(pa.table(macro), data / "macro.parquet")
    ticks = {"commodity_code": ["wti"], "price": [70.0], "event_timestamp": [T0]}
    pq.write_table(pa.table(ticks), data / "ticks.parquet")


def _feast_apply(python: Path, root: Path, registry: Any) -> tuple[Path, dict[str, Any]]:
    repo = root / "feast_repo"
    repo.mkdir()
    shutil.copy(HERE / "feast_registry_repo" / "definitions.py", repo / "definitions.py")
    _data(repo)
    config = {
        "project": "imported",
        "provider": "local",
        "registry": registry,
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    _, site = ladle_paths()
    done = run_feast(python, [str(HERE / "feast_dump.py"), site, str(repo)], cwd=repo)
    assert done.returncode == 0, done.stderr[-3000:]
    return repo, json.loads(done.stdout.strip().splitlines()[-1])


def _ladle_import(root: Path, feast_repo: Path, location: str) -> tuple[FeatureStore, dict[str, Any]]:
    repo = root / "ladle_repo"
    repo.mkdir()
    shutil.copytree(feast_repo / "data", repo / "data", ignore=shutil.ignore_patterns("*.db"))
    config = {"project": "migrated", "registry": "data/ladle_registry.db"}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["-c", str(repo), "import-feast", location, "-o", "json"])
    assert result.exit_code == 0, result.output
    return FeatureStore(repo_path=repo), json.loads(result.output)


def _fields(fields: Any) -> list[list[Any]]:
    return [[f.name, f.dtype.name, f.description, dict(f.tags)] for f in fields]


def _source(s: DataSource) -> dict[str, Any]:
    batch = s.batch_source if isinstance(s, (PushSource, KafkaSource)) else None
    return {
        "class": type(s).__name__,
        "path": s.path if isinstance(s, FileSource) else None,
        "created_timestamp_column": s.created_timestamp_column,
        "description": s.description,
        "tags": s.tags,
        "owner": s.owner,
        "batch_source": batch.name if batch is not None else None,
        "topic": s.topic if isinstance(s, KafkaSource) else None,
    }


def _view(v: Any) -> dict[str, Any]:
    return {
        "entities": sorted(e.name for e in v.entities),
        "features": _fields(v.features),
        "entity_columns": _fields(v.entity_columns),
        "ttl": v.ttl.total_seconds(),
        "tags": v.tags,
        "owner": v.owner,
        "description": v.description,
        "online": v.online,
        "source": v.source.name,
        "batch_source_path": v.batch_source.path,
        "timestamp_field": v.batch_source.timestamp_field,
    }


def _compare_sources(feast: dict[str, Any], store: FeatureStore) -> None:
    sources = {s.name: s for s in store.list_data_sources()}
    assert set(sources) == set(feast["data_sources"])
    for name, want in feast["data_sources"].items():
        if want["class"] == "RequestSource":
            request = sources[name]
            assert isinstance(request, RequestSource)
            got_request = {"fields": _fields(request.schema), "tags": request.tags, "owner": request.owner}
            assert got_request == {"fields": want["schema"], "tags": want["tags"], "owner": want["owner"]}, name
            continue
        got = _source(sources[name])
        # A Ladle push source carries its batch source's timestamp columns; Feast's leaves them empty.
        skip = {"timestamp_field", "created_timestamp_column"} if want["class"] == "PushSource" else {"timestamp_field"}
        assert {k: v for k, v in got.items() if k not in skip} == {k: v for k, v in want.items() if k not in skip}
        if want["class"] == "FileSource":
            assert sources[name].timestamp_field == feast["data_sources"][name]["timestamp_field"]


def _compare(feast: dict[str, Any], store: FeatureStore, report: dict[str, Any]) -> None:
    entities = {e.name: e for e in store.list_entities()}
    assert set(entities) == set(feast["entities"])
    for name, want in feast["entities"].items():
        e = entities[name]
        got = {"join_key": e.join_key, "value_type": e.value_type.name if e.value_type else "UNKNOWN"}
        assert {**got, "description": e.description, "tags": e.tags, "owner": e.owner} == want, name

    _compare_sources(feast, store)

    views = {v.name: v for v in store.list_feature_views() if not isinstance(v, StreamFeatureView)}
    assert set(views) == set(feast["feature_views"])
    for name, want in feast["feature_views"].items():
        assert _view(views[name]) == want, name

    streams = {v.name: v for v in store.list_stream_feature_views()}
    assert set(streams) == set(feast["stream_feature_views"])
    for name, want in feast["stream_feature_views"].items():
        v = streams[name]
        slides = [a.slide_interval.total_seconds() if a.slide_interval else None for a in v.aggregations]
        aggs = [
            [a.column, a.function, a.window.total_seconds(), a.name, slide]
            for a, slide in zip(v.aggregations, slides, strict=True)
        ]
        got = {**_view(v), "aggregations": aggs}
        # Feast stores slide_interval = time_window by default: imported as Ladle's continuous window (None)
        expected_aggs = [[*a[:4], None if a[4] == a[2] else a[4]] for a in want["aggregations"]]
        # Ladle's stream view serves its aggregations; Feast lists the entity column among features too.
        keys = {c[0] for c in want["entity_columns"]}
        features = [f for f in want["features"] if f[0] not in keys]
        assert got == {**want, "features": features, "aggregations": expected_aggs}, name

    notes = {(n["kind"], n["name"], n["note"]) for n in report["notes"]}
    for name, view in feast["stream_feature_views"].items():
        for agg in view["aggregations"]:
            if agg[4] == agg[2]:
                note = (
                    f"aggregation '{agg[3]}': slide_interval = time_window (Feast's default) "
                    "imported as a continuous window"
                )
                assert ("stream feature view", name, note) in notes

    assert report["not_imported"] == []  # everything the real Feast wrote maps
    odfvs = dict(store.snapshot(allow_cache=False).on_demand_feature_views)
    assert set(odfvs) == set(feast["on_demand_feature_views"])
    for name, want in feast["on_demand_feature_views"].items():
        _compare_odfv(odfvs[name], want)

    services = {s.name: s for s in store.list_feature_services()}
    assert set(services) == set(feast["feature_services"])
    for name, want in feast["feature_services"].items():
        s = services[name]
        got = [[p.view_name, p.alias, list(p.features), dict(p.join_key_map)] for p in s.projections]
        assert got == want["projections"], name
        assert (s.tags, s.owner, s.description) == (want["tags"], want["owner"], want["description"])

    _compare_saved_datasets(feast, store)
    imported = {(i["kind"], i["name"]) for i in report["imported"]}
    assert {("saved_dataset", n) for n in feast["saved_datasets"]} <= imported

    permissions = {p.name: p for p in store.list_permissions()}
    assert set(permissions) == set(feast["permissions"])
    for name, want in feast["permissions"].items():
        p = permissions[name]
        got = {
            "name_patterns": list(p.name_patterns),
            "actions": sorted(a.name for a in p.actions),
            "roles": sorted(getattr(p.policy, "roles", [])),
            "tags": p.tags,
        }
        assert got == want, name
        assert set(p.types) == {"feature_view", "feature_service"}


def _cell(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    # NaN (a missed join) as null, as feast_dump.py does
    return None if isinstance(value, float) and math.isnan(value) else value


def _instant(text: str | None) -> datetime | None:
    # Feast reads its saved dataset's timestamps back naive (UTC); Ladle's carry their zone.
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _compare_saved_datasets(feast: dict[str, Any], store: FeatureStore) -> None:
    """Object by object with what Feast's get_saved_dataset reads back, rows included."""
    assert set(feast["saved_datasets"]) == {"macro_training"}  # made with Feast's create_saved_dataset
    for name, want in feast["saved_datasets"].items():
        dataset = store.get_saved_dataset(name)
        frame = read_saved_dataset(store.repo_path, dataset)
        rows = [{k: _cell(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
        got = {
            "features": list(dataset.features),
            "join_keys": list(dataset.join_keys),
            "full_feature_names": dataset.full_feature_names,
            "path": dataset.storage.path,
            "tags": dict(dataset.tags),
            "feature_service_name": dataset.feature_service_name,
            "min_event_timestamp": dataset.min_event_timestamp,
            "max_event_timestamp": dataset.max_event_timestamp,
            "rows": sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str)),
        }
        expected = {
            **want,
            "min_event_timestamp": _instant(want["min_event_timestamp"]),
            "max_event_timestamp": _instant(want["max_event_timestamp"]),
        }
        assert got == expected, name
        assert dataset.row_count == len(want["rows"]) > 0, name
        assert want["full_feature_names"] and want["feature_service_name"] == "macro_only"  # the fields carry data


def _compare_odfv(v: OnDemandFeatureView, want: dict[str, Any]) -> None:
    views = sorted([i.view_name, i.alias, list(i.features)] for i in v.view_inputs)
    got = {
        "features": _fields(v.schema),
        "views": views,
        "request_sources": sorted(r.name for r in v.request_sources),
        "mode": v.mode,
        "write_to_online_store": v.write_to_online_store,
        "tags": v.tags,
        "owner": v.owner,
        "description": v.description,
    }
    assert got == {k: w for k, w in want.items() if k != "computed"}, v.name
    # The function, rebuilt from Feast's stored text, computes what Feast's own (pickled) one did.
    fn = v.udf.load()
    computed = fn(dict(SAMPLE)) if v.mode == "python" else fn(pd.DataFrame(SAMPLE)).to_dict(orient="list")
    assert {k: list(vals) for k, vals in computed.items()} == want["computed"], v.name


def test_a_file_registry_imports_object_by_object(feast_python: Path, tmp_path: Path) -> None:
    feast_repo, feast = _feast_apply(feast_python, tmp_path, "data/registry.db")
    store, report = _ladle_import(tmp_path, feast_repo, str(feast_repo / "data" / "registry.db"))
    try:
        _compare(feast, store, report)
        assert report["apply"]["applied"] is True
    finally:
        store.close()


@pytest.mark.slow
def test_a_sql_registry_on_sqlite_imports_object_by_object(feast_python: Path, tmp_path: Path) -> None:
    path = tmp_path / "feast_repo" / "data" / "feast_sql.db"
    feast_repo, feast = _feast_apply(feast_python, tmp_path, {"registry_type": "sql", "path": f"sqlite:///{path}"})
    # a bare path to Feast's SQLite SQL registry is recognised too
    store, report = _ladle_import(tmp_path, feast_repo, str(path))
    try:
        _compare(feast, store, report)
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_sql_registry_on_postgres_imports_object_by_object(
    feast_python: Path, tmp_path: Path, postgres_url: str
) -> None:
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    feast_repo, feast = _feast_apply(feast_python, tmp_path, {"registry_type": "sql", "path": url})
    store, report = _ladle_import(tmp_path, feast_repo, postgres_url)
    try:
        _compare(feast, store, report)
    finally:
        store.close()


def test_dry_run_writes_nothing_and_bad_locations_are_one_line(tmp_path: Path) -> None:
    repo = tmp_path / "ladle_repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text("project: p\nregistry: data/r.db\n")
    (tmp_path / "junk.db").write_bytes(b"\xff\xfe not a registry")
    for location, message in (
        (str(tmp_path / "missing.db"), "no Feast registry at"),
        (str(tmp_path / "junk.db"), "is not a Feast registry"),
        ("s3://bucket/registry.db", "copy the Feast registry to a local file first"),
    ):
        result = CliRunner().invoke(cli, ["-c", str(repo), "import-feast", location])
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], result.output
