"""Done-when: Feast 0.67's own ``feast init`` template applies, materializes and serves with Ladle, no edits.

The real Feast (its venv: tests/feast_venv.py) writes the template; Ladle's CLI applies and materializes
it; the newest row of each driver in the template's own Parquet file is then read back through the
SDK, Feast's REST route and Feast's gRPC service. The gRPC bytes are parsed by the real Feast's
protos (in Feast's venv), so ``map_val`` / ``json_val`` / ``struct_val`` are checked against Feast
itself, not against Ladle's own idea of them.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from feast_compat.conftest import run_feast
from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from ladle.server.core import ServerCore
from ladle.server.grpc_server import GrpcServer
from ladle.server.rest import create_app
from ladle.server.settings import ServerSettings

with warnings.catch_warnings():  # starlette asks for httpx2 here; the plain httpx client is what we have
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

pytestmark = [pytest.mark.feast_client, pytest.mark.slow]

DOCUMENTS = ("driver_metadata", "driver_config", "driver_profile")
PLAIN = ("conv_rate", "acc_rate", "avg_daily_trips")
REQUEST = {"val_to_add": 1, "val_to_add_2": 20}


@pytest.fixture(scope="module")
def template(feast_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``feast init demo`` by the real Feast, then ``ladle apply`` and ``ladle materialize`` on it, unedited."""
    cwd = tmp_path_factory.mktemp("feast_init")
    init = run_feast(feast_python.parent / "feast", ["init", "demo"], cwd=cwd)
    repo = cwd / "demo" / "feature_repo"
    assert repo.is_dir(), init.stderr[-2000:]
    applied = CliRunner().invoke(cli, ["-c", str(repo), "apply"])
    assert applied.exit_code == 0, applied.output
    end = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    done = CliRunner().invoke(cli, ["-c", str(repo), "materialize", "2000-01-01T00:00:00", end])
    assert done.exit_code == 0, done.output
    return repo


@pytest.fixture(scope="module")
def store(template: Path) -> Iterator[FeatureStore]:
    opened = FeatureStore(repo_path=template)
    yield opened
    opened.close()


def _newest_rows(repo: Path) -> dict[int, dict[str, Any]]:
    """The template's data: per driver, the row with the newest event (then created) timestamp."""
    rows = pq.read_table(repo / "data" / "driver_stats.parquet").to_pylist()
    newest: dict[int, dict[str, Any]] = {}
    for row in rows:
        seen = newest.get(row["driver_id"])
        if seen is None or (row["event_timestamp"], row["created"]) > (seen["event_timestamp"], seen["created"]):
            newest[row["driver_id"]] = row
    return newest


def _expected(repo: Path) -> tuple[list[int], dict[str, list[Any]]]:
    newest = _newest_rows(repo)
    drivers = sorted(newest)
    out: dict[str, list[Any]] = {name: [newest[d][name] for d in drivers] for name in (*PLAIN, *DOCUMENTS)}
    out["driver_config"] = [json.loads(text) for text in out["driver_config"]]  # Json: served as the object
    out["conv_rate_plus_val1"] = [c + REQUEST["val_to_add"] for c in out["conv_rate"]]
    out["conv_rate_plus_val2"] = [c + REQUEST["val_to_add_2"] for c in out["conv_rate"]]
    return drivers, out


def _same(actual: list[Any], expected: list[Any], name: str) -> None:
    assert len(actual) == len(expected), name
    for got, want in zip(actual, expected, strict=True):
        if isinstance(want, float):
            assert math.isclose(got, want, rel_tol=1e-6), (name, got, want)
        else:
            assert got == want, (name, got, want)


def test_the_template_is_all_there(store: FeatureStore, template: Path) -> None:
    names = {v.name for v in store.list_feature_views()}
    assert names == {"driver_hourly_stats", "driver_hourly_stats_fresh", "driver_quality_labels"}
    assert {s.name for s in store.list_feature_services()} == {
        "driver_activity_v1",
        "driver_activity_v2",
        "driver_activity_v3",
    }
    view = store.get_feature_view("driver_hourly_stats")
    dtypes = {f.name: str(f.dtype) for f in view.features}
    assert dtypes["driver_metadata"] == "Map"
    assert dtypes["driver_config"] == "Json"
    assert dtypes["driver_profile"] == "Struct(name: String, age: String)"


def test_the_sdk_serves_the_template_data(store: FeatureStore, template: Path) -> None:
    drivers, expected = _expected(template)
    rows = [{"driver_id": d, **REQUEST} for d in drivers]
    got = store.get_online_features(features=store.get_feature_service("driver_activity_v2"), entity_rows=rows)
    result = got.to_dict()
    assert result["driver_id"] == drivers
    for name, values in expected.items():
        _same(result[name], values, name)


def test_rest_serves_the_template_data_in_feast_json(store: FeatureStore, template: Path) -> None:
    drivers, expected = _expected(template)
    body = {
        "feature_service": "driver_activity_v2",
        "entities": {"driver_id": drivers, **{k: [v] * len(drivers) for k, v in REQUEST.items()}},
    }
    with TestClient(create_app(store)) as client:
        response = client.post("/get-online-features", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    result = dict(zip(payload["metadata"]["feature_names"], payload["results"], strict=True))
    for name, values in expected.items():
        column = result[name]
        assert column["statuses"] == ["PRESENT"] * len(drivers), name
        sent = column["values"]
        if name == "driver_config":  # Feast's json_val is the raw JSON text
            assert all(isinstance(v, str) for v in sent)
            sent = [json.loads(v) for v in sent]
        _same(sent, values, name)


_FEAST_PARSE = """
import json, sys
from feast.protos.feast.serving import ServingService_pb2 as s
from google.protobuf.json_format import MessageToDict
with open(sys.argv[1], "rb") as f:
    r = s.GetOnlineFeaturesResponse.FromString(f.read())
out = {}
for name, vec in zip(r.metadata.feature_names.val, r.results):
    out[name] = [MessageToDict(v) for v in vec.values]
print(json.dumps(out))
"""


def _plain_value(value: dict[str, Any]) -> Any:
    """A Feast ``Value`` (as protobuf's JSON mapping) as a plain Python value."""
    ((field, inner),) = value.items()
    if field in ("mapVal", "structVal"):
        return {k: _plain_value(v) for k, v in inner.get("val", {}).items()}
    if field == "jsonVal":
        return ("json", json.loads(inner))
    if field == "int64Val":
        return int(inner)
    if field.endswith("ListVal"):
        return list(inner.get("val", []))
    return inner


def test_grpc_values_parse_with_feasts_own_protos(store: FeatureStore, template: Path, feast_python: Path) -> None:
    drivers, expected = _expected(template)
    core = ServerCore(store, ServerSettings())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    async def make() -> GrpcServer:
        return GrpcServer(core)

    server: GrpcServer = run(make())
    port = run(server.start("127.0.0.1", 0))
    entities = {
        "driver_id": value_pb.RepeatedValue(val=[value_pb.Value(int64_val=d) for d in drivers]),
        **{k: value_pb.RepeatedValue(val=[value_pb.Value(int64_val=v)] * len(drivers)) for k, v in REQUEST.items()},
    }
    request = serving_pb.GetOnlineFeaturesRequest(feature_service="driver_activity_v2", entities=entities)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                "/feast.serving.ServingService/GetOnlineFeatures",
                request_serializer=serving_pb.GetOnlineFeaturesRequest.SerializeToString,
                response_deserializer=None,  # the raw bytes: Feast's protos parse them below
            )
            raw = call(request, timeout=30)
    finally:
        run(server.stop(1))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    answer = template / "grpc_answer.bin"
    answer.write_bytes(raw)
    parsed = run_feast(feast_python, ["-c", _FEAST_PARSE, str(answer)], cwd=template)
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    result = json.loads(parsed.stdout)
    for name, values in expected.items():
        got = [_plain_value(v) for v in result[name]]
        if name == "driver_config":
            assert all(isinstance(v, tuple) and v[0] == "json" for v in got), got
            got = [v[1] for v in got]
        _same(got, values, name)


KINDS = ("entity", "data_source", "feature_view", "on_demand_feature_view", "feature_service")


def _specs(store: FeatureStore) -> dict[str, dict[str, Any]]:
    snapshot = store.snapshot(allow_cache=False)
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        for name, obj in snapshot.objects(kind).items():  # type: ignore[arg-type]
            spec = obj.to_spec()
            if kind == "on_demand_feature_view":
                # Feast keeps the function's text but not its file's imports: the import resolves the
                # names the function uses (docs/migrating-from-feast.md), so those two parts differ.
                spec["udf"] = {k: v for k, v in spec["udf"].items() if k not in ("imports", "sha256")}
            out[f"{kind} {name}"] = spec
    return out


def test_feasts_registry_of_the_template_imports_as_ladle_applies_it(
    store: FeatureStore, template: Path, feast_python: Path, tmp_path: Path
) -> None:
    """``feast apply`` of the same template, then ``ladle import-feast`` of Feast's registry: every
    object equals, spec for spec, what ``ladle apply`` made of the template (nothing reported)."""
    feast_repo = tmp_path / "feast_repo"
    shutil.copytree(template.parent / "feature_repo", feast_repo, ignore=shutil.ignore_patterns("*.db", "__pycache__"))
    applied = run_feast(feast_python.parent / "feast", ["apply"], cwd=feast_repo)
    assert applied.returncode == 0, applied.stderr[-2000:]
    ladle_repo = tmp_path / "ladle_repo"
    shutil.copytree(feast_repo / "data", ladle_repo / "data", ignore=shutil.ignore_patterns("*.db"))
    (ladle_repo / "feature_store.yaml").write_text("project: demo\nregistry: data/ladle_registry.db\n")
    done = CliRunner().invoke(
        cli, ["-c", str(ladle_repo), "import-feast", str(feast_repo / "data" / "registry.db"), "-o", "json"]
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["not_imported"] == []
    imported = FeatureStore(repo_path=ladle_repo)
    try:
        assert _specs(imported) == _specs(store)
    finally:
        imported.close()
