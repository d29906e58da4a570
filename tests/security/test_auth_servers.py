"""Auth on through every front end: REST, both gRPC engines, RemoteClient, the CLI (API keys and OIDC)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.client import RemoteClient
from ladle.errors import AuthenticationError
from ladle.security.api_keys import hash_key, new_key
from ladle.security.auth import INVALID, MISSING, authenticator_for, exposure_warning
from ladle.server import swagger
from ladle.server._proto.feast.serving import GrpcServer_pb2 as listen_pb
from ladle.server._proto.feast.serving import GrpcServer_pb2_grpc as listen_grpc
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from ladle.server.rest import RestApp
from security.auth_idp import CLIENT_ID, IdP
from security.auth_servers import Recorder, core_of, grpc_server, repo_with_auth, rest_server
from unit.server_repo import PRICES

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

KEY = new_key()
GOLD = {
    "commodity_code": ["gold"],
    "current_price": [1.0],
    "volume_24h": [5],
    "event_timestamp": ["2026-01-01T00:00:00"],
}
FEATURES = ["commodity_price_features:current_price"]
ENTITIES = {"commodity_code": ["crude_oil_wti", "brent"]}


@dataclass
class Secured:
    """A repo with auth on, its store, a token that verifies and one that does not."""

    kind: str
    path: Path
    store: FeatureStore
    good: str
    bad: str
    name: str


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    provider = IdP()
    yield provider
    provider.close()


def _section(kind: str, idp: IdP, **extra: Any) -> dict[str, Any]:
    if kind == "api_key":
        return {"type": "api_key", "keys": [{"name": "trainer", "sha256": hash_key(KEY), "roles": ["r"]}], **extra}
    return {"type": "oidc", "auth_discovery_url": idp.discovery_url, "client_id": CLIENT_ID, **extra}


@pytest.fixture(scope="module", params=["api_key", "oidc"])
def secured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, idp: IdP) -> Iterator[Secured]:
    kind = request.param
    path = repo_with_auth(tmp_path_factory.mktemp(f"auth_{kind}"), _section(kind, idp))
    store = FeatureStore(repo_path=path)
    if kind == "api_key":
        yield Secured(kind, path, store, KEY, KEY[:-1] + ("A" if KEY[-1] != "A" else "B"), "trainer")
    else:
        yield Secured(kind, path, store, idp.token(), idp.token(aud="not-ladle"), "alice")
    store.close()


def _body(path: str) -> dict[str, Any]:
    if path == "/get-online-features":
        return {"features": FEATURES, "entities": ENTITIES}
    if path == "/push":
        return {"push_source_name": "price_push", "df": _row("gold")}
    return {}


def _row(code: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"commodity_code": [code], "current_price": [1.0], "volume_24h": [5], "price_change_24h": [0.0],
            "event_timestamp": [now], "created": [now]}  # fmt: skip


# -- REST -----------------------------------------------------------------------------------
def test_rest_refuses_every_route_but_health_without_a_valid_credential(secured: Secured) -> None:
    app = RestApp(core_of(secured.store))
    paths = [*app.routes, *swagger.ASSETS, "/no-such-route"]
    with TestClient(app) as client:
        for path in paths:
            post = path in {"/get-online-features", "/push", "/write-to-online-store"} or "materialize" in path
            method = "POST" if post else "GET"
            for headers, detail in (
                ({}, MISSING),
                ({"Authorization": f"Bearer {secured.bad}"}, INVALID),
                ({"Authorization": f"Basic {secured.good}"}, MISSING),
                ({"x-api-key": secured.bad}, MISSING if secured.kind == "oidc" else INVALID),
            ):
                answer = client.request(method, path, json=_body(path), headers=headers)
                if path == "/health":
                    assert answer.status_code == 200
                elif path == "/ready":
                    assert answer.json().keys() == {"status"}, "anonymous /ready answers the status only"
                else:
                    assert answer.status_code == 401, (path, headers, answer.text)
                    assert answer.json() == {"detail": detail}, (path, headers)


def test_rest_refuses_before_reading_the_body(secured: Secured) -> None:
    with TestClient(RestApp(core_of(secured.store))) as client:
        huge = b"x" * 300_000  # over the repo's max_body_bytes (200,000): still 401, not 413
        answer = client.post("/push", content=huge)
        assert (answer.status_code, answer.json()) == (401, {"detail": MISSING})


def test_rest_serves_a_valid_credential_and_passes_the_principal_on(secured: Secured) -> None:
    core = core_of(secured.store)
    seen = Recorder(core).seen
    headers = {"Authorization": f"Bearer {secured.good}"}
    with TestClient(RestApp(core)) as client:
        answer = client.post("/get-online-features", json=_body("/get-online-features"), headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][1]["values"] == [PRICES["crude_oil_wti"][0], PRICES["brent"][0]]
        assert client.post("/push", json=_body("/push"), headers=headers).status_code == 200
        ready = client.get("/ready", headers=headers).json()
        assert "checks" in ready
        assert client.get("/metrics", headers=headers).status_code == 200
        assert client.get("/docs", headers=headers).status_code == 200
        if secured.kind == "api_key":
            answer = client.post("/get-online-features", json=_body("/get-online-features"), headers={"x-api-key": KEY})
            assert answer.status_code == 200
    assert [(name, who.name, who.method) for name, who in seen][:2] == [
        ("get_online_features", secured.name, secured.kind),
        ("push", secured.name, secured.kind),
    ]


def test_public_endpoints_open_what_the_config_names(tmp_path: Path, idp: IdP) -> None:
    section = _section("api_key", idp, public=["metrics", "docs", "ready"])
    store = FeatureStore(repo_path=repo_with_auth(tmp_path, section))
    try:
        with TestClient(RestApp(core_of(store))) as client:
            for path in ("/metrics", "/docs", "/openapi.json", "/docs/swagger-ui.css"):
                assert client.get(path).status_code == 200, path
            assert "checks" in client.get("/ready").json()
            assert client.post("/get-online-features", json=_body("/get-online-features")).status_code == 401
    finally:
        store.close()


# -- gRPC -----------------------------------------------------------------------------------
def _online_request() -> serving_pb.GetOnlineFeaturesRequest:
    column = value_pb.RepeatedValue(val=[value_pb.Value(string_val=v) for v in ENTITIES["commodity_code"]])
    return serving_pb.GetOnlineFeaturesRequest(
        features=serving_pb.FeatureList(val=FEATURES), entities={"commodity_code": column}
    )


def _calls(channel: grpc.Channel) -> dict[str, Any]:
    serving = serving_grpc.ServingServiceStub(channel)
    listen = listen_grpc.GrpcFeatureServerStub(channel)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    list_services = reflection_pb2.ServerReflectionRequest(list_services="")
    return {
        "GetFeastServingInfo": lambda md: serving.GetFeastServingInfo(
            serving_pb.GetFeastServingInfoRequest(), metadata=md
        ),
        "ServingService/GetOnlineFeatures": lambda md: serving.GetOnlineFeatures(_online_request(), metadata=md),
        "GrpcFeatureServer/GetOnlineFeatures": lambda md: listen.GetOnlineFeatures(_online_request(), metadata=md),
        "Push": lambda md: listen.Push(
            listen_pb.PushRequest(
                stream_feature_view="price_push", features={k: str(v[0]) for k, v in _row("gold").items()}
            ),
            metadata=md,
        ),
        "WriteToOnlineStore": lambda md: listen.WriteToOnlineStore(
            listen_pb.WriteToOnlineStoreRequest(
                feature_view_name="commodity_price_features", features={"commodity_code": "gold"}
            ),
            metadata=md,
        ),
        "ServerReflectionInfo": lambda md: list(reflection.ServerReflectionInfo(iter([list_services]), metadata=md)),
    }


@pytest.mark.parametrize("engine", ["ladle", "grpcio"])
def test_grpc_refuses_every_rpc_but_health_without_a_valid_credential(secured: Secured, engine: str) -> None:
    core = core_of(secured.store)
    seen = Recorder(core).seen
    with grpc_server(core, engine) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="")) is not None  # open to probes
        calls = _calls(channel)
        for name, call in calls.items():
            for metadata, detail in (
                ((), MISSING),
                ((("authorization", f"Bearer {secured.bad}"),), INVALID),
            ):
                with pytest.raises(grpc.RpcError) as info:
                    call(metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, metadata)
                assert info.value.details() == detail, name
        good = (("authorization", f"Bearer {secured.good}"),)
        response = calls["ServingService/GetOnlineFeatures"](good)
        assert [v.double_val for v in response.results[1].values] == [PRICES["crude_oil_wti"][0], PRICES["brent"][0]]
        assert calls["GetFeastServingInfo"](good).version
        assert calls["Push"](good).status
        services = calls["ServerReflectionInfo"](good)[0].list_services_response.service
        assert "feast.serving.ServingService" in {s.name for s in services}
        if secured.kind == "api_key":
            assert calls["GrpcFeatureServer/GetOnlineFeatures"]((("x-api-key", KEY),)).results
    assert seen[0] == ("get_online_features", seen[0][1])
    assert (seen[0][1].name, seen[0][1].method) == (secured.name, secured.kind)
    assert ("push", seen[1][1]) == seen[1] and seen[1][1].name == secured.name


@pytest.mark.parametrize("engine", ["ladle", "grpcio"])
def test_grpc_reflection_can_be_public(tmp_path: Path, idp: IdP, engine: str) -> None:
    store = FeatureStore(repo_path=repo_with_auth(tmp_path, _section("api_key", idp, public=["reflection"])))
    try:
        core = core_of(store)
        with grpc_server(core, engine) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            calls = _calls(channel)
            assert calls["ServerReflectionInfo"](())[0].list_services_response.service
            with pytest.raises(grpc.RpcError) as info:
                calls["ServingService/GetOnlineFeatures"](())
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        store.close()


# -- RemoteClient and the SDK ---------------------------------------------------------------
def test_remote_client_sends_its_credential(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LADLE_AUTH_TOKEN", raising=False)
    with rest_server(RestApp(core_of(secured.store))) as url:
        values = RemoteClient(url, credential=secured.good).get_online_features(FEATURES, ENTITIES)
        assert values["current_price"] == [PRICES["crude_oil_wti"][0], PRICES["brent"][0]]
        assert values["commodity_code"] == ENTITIES["commodity_code"]
        RemoteClient(url, auth={"type": secured.kind, "token": secured.good}).push("price_push", _row("silver"))
        with pytest.raises(AuthenticationError, match=MISSING):
            RemoteClient(url).get_online_features(FEATURES, ENTITIES)
        with pytest.raises(AuthenticationError, match=INVALID):
            RemoteClient(url, credential=secured.bad).get_online_features(FEATURES, ENTITIES)
        monkeypatch.setenv("LADLE_AUTH_TOKEN", secured.good)
        assert (
            RemoteClient(url).get_online_features("price_model", {**ENTITIES, "station_id": [1, 2]})["current_price"][0]
            == PRICES["crude_oil_wti"][0]
        )


def test_sdk_principal(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LADLE_AUTH_TOKEN", raising=False)
    assert FeatureStore(repo_path=secured.path, credential=secured.good).principal.name == secured.name
    with pytest.raises(AuthenticationError, match=INVALID):
        _ = FeatureStore(repo_path=secured.path, credential=secured.bad).principal
    with pytest.raises(AuthenticationError, match=MISSING):
        _ = FeatureStore(repo_path=secured.path).principal


# -- CLI ------------------------------------------------------------------------------------
def test_cli_new_key_hash_key_and_whoami(tmp_path: Path, idp: IdP, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LADLE_AUTH_TOKEN", raising=False)
    runner = CliRunner()
    made = runner.invoke(cli, ["auth", "new-key", "--name", "etl", "--role", "writer", "--role", "reader"])
    assert made.exit_code == 0, made.output
    key = made.output.splitlines()[0].removeprefix("key: ")
    assert f"sha256: {hash_key(key)}" in made.output and "- writer" in made.output
    assert runner.invoke(cli, ["auth", "hash-key", key]).output.strip() == hash_key(key)
    assert runner.invoke(cli, ["auth", "hash-key"], input=f"{key}\n").output.strip() == hash_key(key)
    import yaml

    entry = yaml.safe_load(made.output.split("\n", 2)[2])
    repo = repo_with_auth(tmp_path, {"type": "api_key", "keys": entry})
    whoami = runner.invoke(cli, ["--chdir", str(repo), "--token", key, "auth", "whoami"])
    assert whoami.exit_code == 0, whoami.output
    assert "name: etl" in whoami.output and "roles: reader, writer" in whoami.output
    by_env = runner.invoke(cli, ["--chdir", str(repo), "auth", "whoami"], env={"LADLE_AUTH_TOKEN": key})
    assert "name: etl" in by_env.output
    for args, words in ((["--token", "nope"], INVALID), ([], MISSING)):
        refused = runner.invoke(cli, ["--chdir", str(repo), *args, "auth", "whoami"])
        assert refused.exit_code == 1
        assert f"AuthenticationError: {words}" in refused.output
        assert "Traceback" not in refused.output


def test_a_bad_auth_section_stops_serve_with_one_line(tmp_path: Path) -> None:
    repo = repo_with_auth(tmp_path, {"type": "api_key", "keys": []})
    result = CliRunner().invoke(cli, ["--chdir", str(repo), "serve"])
    assert result.exit_code == 1
    assert "at least one key" in result.output and "Traceback" not in result.output
    unknown = repo_with_auth(tmp_path / "other", {"type": "ldap"})
    result = CliRunner().invoke(cli, ["--chdir", str(unknown), "serve"])
    assert result.exit_code == 1 and "ldap" in result.output


def test_exposure_warning() -> None:
    no_auth = authenticator_for(None)
    keys = authenticator_for({"type": "api_key", "keys": [{"name": "a", "sha256": hash_key("k")}]})
    assert exposure_warning("127.0.0.1", no_auth) is None
    assert "SECURITY WARNING" in (exposure_warning("0.0.0.0", no_auth) or "")
    assert exposure_warning("0.0.0.0", keys) is None
    assert "metrics_port" in (exposure_warning("0.0.0.0", keys, metrics_port=8000) or "")


def test_an_unreachable_identity_provider_is_503_not_401(tmp_path: Path) -> None:
    section = {"type": "oidc", "auth_discovery_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
    store = FeatureStore(repo_path=repo_with_auth(tmp_path, {**section, "client_id": CLIENT_ID}))
    try:
        with TestClient(RestApp(core_of(store))) as client:
            token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2ln"
            answer = client.post("/get-online-features", json=_body("/get-online-features"), headers={
                "Authorization": f"Bearer {token}"})  # fmt: skip
            assert answer.status_code == 503, answer.text
            assert "cannot fetch" in answer.text
            assert client.get("/health").status_code == 200
    finally:
        store.close()
