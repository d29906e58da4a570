"""Permissions and write safety over REST and both gRPC engines: 403 / PERMISSION_DENIED, nothing written.

The repo is configured with ``auth: {type: api_key}`` and three keys (alice, bob, root), so the
callers are authenticated as in production; handlers, core, registry and online store are real.
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from ladle import FeatureStore
from ladle.security.api_keys import hash_key
from ladle.server._proto.feast.serving import GrpcServer_pb2 as listen_pb
from ladle.server._proto.feast.serving import GrpcServer_pb2_grpc as listen_grpc
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from ladle.server.core import ServerCore
from ladle.server.rest import RestApp
from ladle.server.settings import ServerSettings
from security.auth_servers import grpc_server
from security.test_permissions_sdk import PERMISSIONS
from unit.server_repo import build_repo

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

#: Each caller's API key (the key is "<name>-token") and roles.
CALLERS = {"alice": ["analyst"], "bob": ["writer"], "root": ["admin"]}


def _configure_api_keys(repo: Path) -> None:
    config_file = repo / "feature_store.yaml"
    config = yaml.safe_load(config_file.read_text())
    keys = [{"name": name, "sha256": hash_key(f"{name}-token"), "roles": roles} for name, roles in CALLERS.items()]
    config["auth"] = {"type": "api_key", "keys": keys}
    config_file.write_text(yaml.safe_dump(config))


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-token"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("perm_server_repo")
    built = build_repo(path)
    built.store.apply(PERMISSIONS)
    built.store.close()
    _configure_api_keys(path)
    return path


@pytest.fixture(scope="module")
def store(repo: Path) -> Iterator[FeatureStore]:
    store = FeatureStore(repo_path=repo, credential="root-token")  # the SDK checks in these tests act as root
    yield store
    store.close()


@pytest.fixture(scope="module")
def client(store: FeatureStore) -> Iterator[TestClient]:
    with TestClient(RestApp(ServerCore(store, ServerSettings()))) as c:
        yield c


def online_value(store: FeatureStore, ref: str, code: str) -> Any:
    feature = ref.split(":")[1]
    return store.get_online_features([ref], [{"commodity_code": code}]).to_dict()[feature][0]


def forbidden(response: Any) -> str:
    assert response.status_code == 403, response.text
    detail = json.loads(response.json())
    assert detail["class"] == "FeastPermissionError"
    message: str = detail["message"]
    return message


def test_rest_online_read_is_checked_per_view(client: TestClient) -> None:
    body = {"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["brent"]}}
    assert client.post("/get-online-features", json=body, headers=bearer("alice")).status_code == 200
    assert client.post("/get-online-features", json=body, headers=bearer("alice")).status_code == 200  # cached
    denied = client.post("/get-online-features", json=body, headers=bearer("bob"))
    assert forbidden(denied).startswith("bob may not READ_ONLINE feature view 'commodity_price_features'")
    body["features"] = ["station_features:name"]
    body["entities"] = {"station_id": [1]}
    assert "READ_ONLINE feature view 'station_features'" in forbidden(
        client.post("/get-online-features", json=body, headers=bearer("alice"))
    )
    assert client.post("/get-online-features", json=body).status_code == 401


def test_rest_writes_are_checked_and_a_denial_writes_nothing(client: TestClient, store: FeatureStore) -> None:
    now = datetime.now(UTC).isoformat()
    before = online_value(store, "commodity_price_features:current_price", "crude_oil_wti")
    df = {"commodity_code": ["crude_oil_wti"], "current_price": [1.0], "price_change_24h": [0.0],
          "volume_24h": [1], "event_timestamp": [now]}  # fmt: skip
    write = {"feature_view_name": "commodity_price_features", "df": df}
    message = forbidden(client.post("/write-to-online-store", json=write, headers=bearer("bob")))
    assert message.startswith("bob may not WRITE_ONLINE feature view 'commodity_price_features'")
    push = {"push_source_name": "price_push", "df": df, "to": "online_and_offline"}
    assert "WRITE_OFFLINE feature view 'live_prices'" in forbidden(
        client.post("/push", json=push, headers=bearer("bob"))
    )
    materialize = {"feature_views": ["commodity_price_features"], "end_ts": now}
    denied = client.post("/materialize-incremental", json=materialize, headers=bearer("alice"))
    assert "alice may not WRITE_ONLINE" in forbidden(denied)
    store.refresh_registry()
    assert online_value(store, "commodity_price_features:current_price", "crude_oil_wti") == before
    assert online_value(store, "live_prices:current_price", "crude_oil_wti") is None
    assert store.registry.watermark("commodity_price_features") is None
    push["to"] = "online"
    assert client.post("/push", json=push, headers=bearer("bob")).status_code == 200
    assert online_value(store, "live_prices:current_price", "crude_oil_wti") == 1.0


def test_rest_materialization_runs_as_the_caller(
    client: TestClient, store: FeatureStore, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"feature_views": ["commodity_price_features"], "end_ts": datetime.now(UTC).isoformat()}
    with caplog.at_level(logging.INFO, logger="ladle.audit"):
        assert client.post("/materialize-incremental", json=body, headers=bearer("root")).status_code == 200
    assert store.registry.watermark("commodity_price_features") is not None
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ladle.audit"]
    assert (line["event"], line["principal"], line["source"]) == ("materialize", "root", "rest")
    assert line["outcome"] == "allowed"


def test_rest_refuses_future_event_times(client: TestClient, store: FeatureStore) -> None:
    future = (datetime.now(UTC) + timedelta(hours=6)).isoformat()
    df = {"commodity_code": ["brent"], "current_price": [2.0], "volume_24h": [1], "event_timestamp": [future]}
    response = client.post("/push", json={"push_source_name": "price_push", "df": df}, headers=bearer("bob"))
    assert response.status_code == 400
    assert "the limit is 300 s" in response.text and future[:16] in response.text
    assert online_value(store, "live_prices:current_price", "brent") is None


def test_rest_audit_lines_name_the_source(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    now = datetime.now(UTC).isoformat()
    df = {"commodity_code": ["gold"], "current_price": [3.0], "volume_24h": [1], "event_timestamp": [now]}
    with caplog.at_level(logging.INFO, logger="ladle.audit"):
        client.post("/push", json={"push_source_name": "price_push", "df": df}, headers=bearer("bob"))
        client.post("/push", json={"push_source_name": "price_push", "df": df}, headers=bearer("alice"))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ladle.audit"]
    assert [(x["principal"], x["outcome"], x["source"]) for x in lines] == [
        ("bob", "allowed", "rest"),
        ("alice", "denied", "rest"),
    ]
    assert lines[0]["rows"] == 1


@pytest.fixture(scope="module", params=["ladle", "grpcio"])
def channel(request: pytest.FixtureRequest, store: FeatureStore) -> Iterator[grpc.Channel]:
    with (
        grpc_server(ServerCore(store, ServerSettings()), request.param) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as ch,
    ):
        yield ch


def metadata(name: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {name}-token")]


def _online(view: str, feature: str, **entities: value_pb.RepeatedValue) -> serving_pb.GetOnlineFeaturesRequest:
    return serving_pb.GetOnlineFeaturesRequest(
        features=serving_pb.FeatureList(val=[f"{view}:{feature}"]), entities=entities
    )


def _codes(*codes: str) -> value_pb.RepeatedValue:
    return value_pb.RepeatedValue(val=[value_pb.Value(string_val=c) for c in codes])


def test_grpc_online_read_is_checked(channel: grpc.Channel) -> None:
    stub = serving_grpc.ServingServiceStub(channel)
    request = _online("commodity_price_features", "current_price", commodity_code=_codes("brent"))
    response = stub.GetOnlineFeatures(request, metadata=metadata("alice"))
    assert response.results[1].values[0].double_val == 82.5
    with pytest.raises(grpc.RpcError) as denied:
        stub.GetOnlineFeatures(request, metadata=metadata("bob"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "bob may not READ_ONLINE feature view 'commodity_price_features'" in denied.value.details()
    with pytest.raises(grpc.RpcError) as anonymous:
        stub.GetOnlineFeatures(request)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_grpc_writes_are_checked_and_a_denial_writes_nothing(channel: grpc.Channel, store: FeatureStore) -> None:
    stub = listen_grpc.GrpcFeatureServerStub(channel)
    now = datetime.now(UTC).isoformat()
    code = f"copper_{uuid.uuid4().hex[:8]}"  # the store is shared by both engines' runs
    row = {"commodity_code": code, "current_price": "4.5", "volume_24h": "2", "event_timestamp": now}
    with pytest.raises(grpc.RpcError) as denied:
        stub.Push(listen_pb.PushRequest(stream_feature_view="price_push", features=row), metadata=metadata("alice"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "alice may not WRITE_ONLINE feature view 'live_prices'" in denied.value.details()
    write = listen_pb.WriteToOnlineStoreRequest(
        feature_view_name="commodity_price_features", features={**row, "price_change_24h": "0"}
    )
    with pytest.raises(grpc.RpcError) as refused:
        stub.WriteToOnlineStore(write, metadata=metadata("bob"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "WRITE_ONLINE feature view 'commodity_price_features'" in refused.value.details()
    assert online_value(store, "live_prices:current_price", code) is None
    assert online_value(store, "commodity_price_features:current_price", code) is None
    future = {**row, "event_timestamp": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    with pytest.raises(grpc.RpcError) as skewed:
        stub.Push(listen_pb.PushRequest(stream_feature_view="price_push", features=future), metadata=metadata("bob"))
    assert skewed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "write_safety.max_future_skew_seconds" in skewed.value.details()
    assert online_value(store, "live_prices:current_price", code) is None
    pushed = stub.Push(listen_pb.PushRequest(stream_feature_view="price_push", features=row), metadata=metadata("bob"))
    assert pushed.status is True
    assert online_value(store, "live_prices:current_price", code) == 4.5
