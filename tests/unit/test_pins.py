"""Version pinning: ``view@v3:feature`` and ``FeatureService(pins=...)`` keep answering from their
version after newer applies (SDK online and offline, REST, gRPC), and plan/apply guard pinned consumers.

Real embedded stores (SQLite registry and online store, Parquet + DuckDB offline): see ``pins_repo``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest
from click.testing import CliRunner

from ladle import FeatureService, FeatureStore
from ladle.cli.main import cli
from ladle.errors import (
    DefinitionError,
    FeatureNotFoundError,
    InvalidFeatureReferenceError,
    PinConflictError,
    VersionNotFoundError,
)
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from ladle.server.core import ServerCore
from ladle.server.grpc_server import GrpcServer
from ladle.server.rest import create_app
from ladle.server.settings import ServerSettings
from ladle.types import FieldStatus
from unit.pins_repo import (
    COMMODITY,
    ONLINE_PRICES,
    SOURCE_TIME,
    V1_PRICES,
    V2_PRICES,
    fill_online,
    prices_view,
    write_repo,
)

with warnings.catch_warnings():  # starlette asks for httpx2 here; the plain httpx client is what we have
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

PINNED = ["prices@v1:current_price", "prices@v1:volume"]


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """v1 applied and its online rows written, then v2 applied (new feature, shorter ttl, other source)."""
    path = tmp_path_factory.mktemp("pins_drifted")
    store = write_repo(path)
    v1 = prices_view("v1")
    store.apply([COMMODITY, v1])
    fill_online(store)
    store.apply([COMMODITY, prices_view("v2")])
    store.close()
    yield path


@pytest.fixture(scope="module")
def store(drifted: Path) -> Iterator[FeatureStore]:
    s = FeatureStore(repo_path=drifted)
    yield s
    s.close()


# -- references -----------------------------------------------------------------------------------


def test_pinned_reference_answers_from_its_version_after_a_newer_apply(store: FeatureStore) -> None:
    assert [h.version for h in store.history("feature_view", "prices")] == [1, 2]
    latest = store.get_online_features(["prices:current_price"], [{"commodity_code": "wti"}])
    # v2's ttl is one hour and the row is two hours old.
    assert latest.statuses_dict()["current_price"] == [FieldStatus.OUTSIDE_MAX_AGE]
    pinned = store.get_online_features(PINNED, [{"commodity_code": "wti"}, {"commodity_code": "nope"}])
    assert pinned.to_dict() == {
        "commodity_code": ["wti", "nope"],
        "current_price": [ONLINE_PRICES["wti"], None],
        "volume": [100, None],
    }
    assert pinned.statuses_dict()["current_price"] == [FieldStatus.PRESENT, FieldStatus.NOT_FOUND]
    assert pinned.variant is None and pinned.variants is None


def test_pinned_reference_sees_only_its_versions_schema(store: FeatureStore) -> None:
    with pytest.raises(FeatureNotFoundError, match="spread"):
        store.get_online_features(["prices@v1:spread"], [{"commodity_code": "wti"}])
    whole = store.get_online_features(["prices@v1"], [{"commodity_code": "wti"}])
    assert whole.feature_names == ["commodity_code", "current_price", "volume"]
    newer = store.get_online_features(["prices@v2:spread"], [{"commodity_code": "wti"}])
    assert newer.statuses_dict()["spread"] == [FieldStatus.OUTSIDE_MAX_AGE]


@pytest.mark.parametrize(
    ("ref", "error", "match"),
    [
        ("prices@v9:current_price", VersionNotFoundError, "stored versions of feature view 'prices': v1, v2"),
        ("prices@3:current_price", InvalidFeatureReferenceError, "name@vN"),
        ("prices@v0:current_price", InvalidFeatureReferenceError, "name@vN"),
        ("prices@:current_price", InvalidFeatureReferenceError, "name@vN"),
    ],
)
def test_bad_pins_are_typed_errors(store: FeatureStore, ref: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        store.get_online_features([ref], [{"commodity_code": "wti"}])


def test_pinned_historical_reads_the_pinned_versions_source(store: FeatureStore) -> None:
    entity_df = pd.DataFrame(
        {"commodity_code": ["wti", "brent"], "event_timestamp": [SOURCE_TIME + pd.Timedelta(minutes=30)] * 2}
    )
    old = store.get_historical_features(entity_df, ["prices@v1:current_price"]).to_df()
    new = store.get_historical_features(entity_df, ["prices:current_price"]).to_df()
    assert dict(zip(old.commodity_code, old.current_price, strict=True)) == V1_PRICES
    assert dict(zip(new.commodity_code, new.current_price, strict=True)) == V2_PRICES


def test_pinned_reference_on_redis(redis_address: str, tmp_path: Path) -> None:
    store = write_repo(tmp_path, redis=redis_address, project=f"pins_{uuid.uuid4().hex[:8]}")
    try:
        store.apply([COMMODITY, prices_view("v1")])
        fill_online(store)
        store.apply([COMMODITY, prices_view("v2")])
        rows = [{"commodity_code": "wti"}, {"commodity_code": "brent"}]
        pinned = store.get_online_features(PINNED, rows)
        assert pinned.to_dict() == {
            "commodity_code": ["wti", "brent"],
            "current_price": [ONLINE_PRICES["wti"], ONLINE_PRICES["brent"]],
            "volume": [100, 101],
        }
        latest = store.get_online_features(["prices:current_price", "prices:spread"], rows)
        assert set(latest.statuses_dict()["current_price"]) == {FieldStatus.OUTSIDE_MAX_AGE}
    finally:
        store.teardown()
        store.close()


@pytest.mark.postgres
def test_pins_on_a_postgresql_registry(postgres_url: str, tmp_path: Path) -> None:
    store = write_repo(tmp_path, registry=postgres_url)
    try:
        store.apply([COMMODITY, prices_view("v1")])
        fill_online(store)
        store.apply([COMMODITY, prices_view("additive")])
        store.apply([FeatureService(name="pinned", features=[prices_view("v1")[["volume"]]], pins={"prices": 1})])
        assert store.get_online_features("pinned", [{"commodity_code": "wti"}]).to_dict()["volume"] == [100]
        with pytest.raises(PinConflictError, match="removes feature 'volume'"):
            store.apply([COMMODITY, prices_view("no_volume")])
        with pytest.raises(VersionNotFoundError, match="v1, v2"):
            store.get_online_features(["prices@v3:volume"], [{"commodity_code": "wti"}])
    finally:
        store.close()


# -- REST and gRPC --------------------------------------------------------------------------------


def test_rest_honours_pins(drifted: Path) -> None:
    served = FeatureStore(repo_path=drifted)
    try:
        with TestClient(create_app(served)) as client:
            body = {"features": PINNED, "entities": {"commodity_code": ["wti", "brent"]}}
            response = client.post("/get-online-features", json=body)
            assert response.status_code == 200, response.text
            data = response.json()
            assert data["metadata"]["feature_names"] == ["commodity_code", "current_price", "volume"]
            assert data["results"][1]["values"] == [ONLINE_PRICES["wti"], ONLINE_PRICES["brent"]]
            assert data["results"][1]["statuses"] == ["PRESENT", "PRESENT"]
            assert "x-ladle-variant" not in response.headers
            bad = client.post("/get-online-features", json={**body, "features": ["prices@v7:volume"]})
            assert bad.status_code == 404 and "prices@v7" in bad.text
    finally:
        served.close()


@pytest.mark.parametrize("engine", ["ladle", "grpcio"])
def test_grpc_honours_pins(drifted: Path, engine: str) -> None:
    with _grpc_channel(drifted, engine) as channel:
        stub = serving_grpc.ServingServiceStub(channel)
        request = serving_pb.GetOnlineFeaturesRequest(
            features=serving_pb.FeatureList(val=PINNED),
            entities={"commodity_code": value_pb.RepeatedValue(val=[value_pb.Value(string_val="wti")])},
        )
        reply, call = stub.GetOnlineFeatures.with_call(request, timeout=10)
        assert list(reply.metadata.feature_names.val) == ["commodity_code", "current_price", "volume"]
        assert reply.results[1].values[0].double_val == ONLINE_PRICES["wti"]
        assert reply.results[1].statuses[0] == serving_pb.PRESENT
        assert "ladle-variant" not in dict(call.initial_metadata())


class _grpc_channel:
    """An in-process gRPC server over a fresh store of ``path``, and a channel to it."""

    def __init__(self, path: Path, engine: str) -> None:
        self.store = FeatureStore(repo_path=path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.engine = engine

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def __enter__(self) -> grpc.Channel:
        self.thread.start()
        core = ServerCore(self.store, ServerSettings())

        async def make() -> GrpcServer:
            return GrpcServer(core, engine=self.engine)

        self.server = self._run(make())
        port = self._run(self.server.start("127.0.0.1", 0))
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        return self.channel

    def __exit__(self, *exc: object) -> None:
        self.channel.close()
        self._run(self.server.stop(1))

        async def cancel_the_rest() -> None:  # e.g. the readiness watcher: end it rather than drop it pending
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._run(cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.store.close()


# -- feature services with pins; plan and apply ---------------------------------------------------


@pytest.fixture
def pinned_repo(tmp_path: Path) -> Iterator[FeatureStore]:
    """v1 applied with online rows, then a service pinning prices@v1."""
    store = write_repo(tmp_path)
    v1 = prices_view("v1")
    store.apply([COMMODITY, v1])
    fill_online(store)
    service = FeatureService(name="pinned_model", features=[v1[["current_price", "volume"]]], pins={"prices": 1})
    store.apply([service])
    yield store
    store.close()


def _pinned_service(view_kind: str = "v1") -> FeatureService:
    view = prices_view(view_kind)
    return FeatureService(name="pinned_model", features=[view[["current_price", "volume"]]], pins={"prices": 1})


def test_service_pin_is_stored_and_survives_an_additive_change(pinned_repo: FeatureStore) -> None:
    store = pinned_repo
    assert store.get_feature_service("pinned_model").pins == {"prices": 1}
    result = store.apply([COMMODITY, prices_view("additive")])
    assert result.applied and result.warnings == ()
    assert [h.version for h in store.history("feature_view", "prices")] == [1, 2]
    response = store.get_online_features("pinned_model", [{"commodity_code": "brent"}])
    assert response.to_dict() == {
        "commodity_code": ["brent"],
        "current_price": [ONLINE_PRICES["brent"]],
        "volume": [101],
    }
    unpinned = store.get_online_features(["prices"], [{"commodity_code": "brent"}])
    assert unpinned.feature_names == ["commodity_code", "current_price", "volume", "spread"]


@pytest.mark.parametrize(
    ("kind", "problem"),
    [("no_volume", "removes feature 'volume'"), ("short_ttl", "changes its ttl 86400.0s → 3600.0s")],
)
def test_plan_warns_and_apply_refuses_a_change_that_breaks_a_pin(
    pinned_repo: FeatureStore, kind: str, problem: str
) -> None:
    store = pinned_repo
    before = store.registry.version()
    change = [COMMODITY, prices_view(kind)]
    planned = store.plan(change, partial=True)
    assert [w for w in planned.warnings if problem in w] == [
        f"feature service 'pinned_model' pins prices@v1: the latest 'prices' {problem}"
    ]
    with pytest.raises(PinConflictError, match="pinned_model") as refused:
        store.apply(change)
    assert any(problem in c for c in refused.value.conflicts)
    assert store.registry.version() == before  # nothing written
    forced = store.apply(change, force=True)
    assert forced.applied and any(problem in w for w in forced.warnings)
    # Accepted once: the same state does not warn again.
    assert store.plan([COMMODITY, prices_view(kind)], partial=True).warnings == ()
    # The pinned service still reads v1's definition.
    assert store.get_online_features("pinned_model", [{"commodity_code": "wti"}]).feature_names == [
        "commodity_code", "current_price", "volume",
    ]  # fmt: skip


def test_a_new_pin_on_an_incompatible_version_warns(pinned_repo: FeatureStore) -> None:
    store = pinned_repo
    store.apply([COMMODITY, prices_view("no_volume")], force=True)
    other = FeatureService(
        name="other_model", features=[prices_view("v1")[["current_price", "volume"]]], pins={"prices": 1}
    )
    with pytest.raises(PinConflictError, match="feature service 'other_model' pins prices@v1"):
        store.apply([other])


def test_pin_errors(pinned_repo: FeatureStore) -> None:
    store = pinned_repo
    with pytest.raises(VersionNotFoundError, match="prices@v5"):
        store.plan([FeatureService(name="x", features=[prices_view("v1")], pins={"prices": 5})], partial=True)
    with pytest.raises(DefinitionError, match="does not read"):
        FeatureService(name="x", features=[prices_view("v1")], pins={"weather": 1})
    with pytest.raises(DefinitionError, match="version >= 1"):
        FeatureService(name="x", features=[prices_view("v1")], pins={"prices": 0})
    spread = prices_view("additive")[["spread"]]
    with pytest.raises(DefinitionError, match=r"reads \['spread'\] from prices@v1"):
        store.plan(
            [COMMODITY, prices_view("additive"), FeatureService(name="x", features=[spread], pins={"prices": 1})]
        )


def test_cli_plan_warns_and_apply_refuses_without_force(pinned_repo: FeatureStore, tmp_path: Path) -> None:
    (tmp_path / "repo.py").write_text(_repo_py("no_volume"), encoding="utf-8")
    runner = CliRunner()
    plan = runner.invoke(cli, ["-c", str(tmp_path), "plan"])
    assert plan.exit_code == 0, plan.output
    assert "removes feature 'volume'" in plan.output and "refuse without --force" in plan.output
    refused = runner.invoke(cli, ["-c", str(tmp_path), "apply"])
    assert refused.exit_code != 0
    assert "Traceback" not in refused.output and "breaks pinned consumers" in refused.output
    forced = runner.invoke(cli, ["-c", str(tmp_path), "apply", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "applied anyway" in forced.output
    listed = runner.invoke(cli, ["-c", str(tmp_path), "feature-services", "list"])
    assert listed.exit_code == 0 and "prices@v1" in listed.output
    args = ["get-online-features", "-f", "prices@v1:volume", "-e", "commodity_code=wti", "-o", "json"]
    pinned = runner.invoke(cli, ["-c", str(tmp_path), *args])
    assert pinned.exit_code == 0, pinned.output
    body = json.loads(pinned.stdout)
    assert body["metadata"]["feature_names"] == ["commodity_code", "volume"]
    assert body["results"][1]["values"] == [100]  # v1's volume, which the latest prices no longer has


def _repo_py(kind: str) -> str:
    return (
        "import sys, pathlib\n"
        f"sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
        "from ladle import FeatureService\n"
        "from unit.pins_repo import COMMODITY, prices_view\n"
        f"prices = prices_view({kind!r})\n"
        "reads = prices_view('v1')[['current_price', 'volume']]  # what v1 had\n"
        "service = FeatureService(name='pinned_model', features=[reads], pins={'prices': 1})\n"
    )


def test_pinned_service_training_data_reads_the_pinned_source(pinned_repo: FeatureStore) -> None:
    store = pinned_repo
    forced = store.apply([COMMODITY, prices_view("v2")], force=True)  # another source, ttl: breaks the pin
    assert any("changes its source" in w for w in forced.warnings)
    entity_df = pd.DataFrame(
        {"commodity_code": ["wti", "brent"], "event_timestamp": [SOURCE_TIME + pd.Timedelta(minutes=30)] * 2}
    )
    pinned = store.get_historical_features(entity_df, feature_service="pinned_model").to_df()
    latest = store.get_historical_features(entity_df, ["prices:current_price", "prices:spread"]).to_df()
    assert dict(zip(pinned.commodity_code, pinned.current_price, strict=True)) == V1_PRICES
    assert list(pinned.columns) == ["commodity_code", "event_timestamp", "current_price", "volume"]
    assert dict(zip(latest.commodity_code, latest.current_price, strict=True)) == V2_PRICES
