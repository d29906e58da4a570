"""On-demand feature views answer the same through the SDK, REST and gRPC (in-process servers)."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ladle import FeatureStore
from ladle.server import codec
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from ladle.server.core import ServerCore
from ladle.server.grpc_server import GrpcServer
from ladle.server.rest import create_app
from ladle.server.settings import ServerSettings
from unit.odfv_repo import DEFINITIONS, PRICES, build_odfv_repo

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

FEATURES = ["prices:volume_24h", "order_value:order_value", "order_value_py:order_value_py", "big_order:big_order"]
CODES = ["brent", "nope", "gold"]
QUANTITIES = [2.0, 500.0, 0.5]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    path: Path = tmp_path_factory.mktemp("odfv_servers")
    service = "\nfrom ladle import FeatureService\n\n"
    service += 'model = FeatureService(name="model", features=[order_value, big_order])\n'
    build_odfv_repo(path, DEFINITIONS + service).close()
    s = FeatureStore(repo_path=path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def rest(store: FeatureStore) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as client:
        yield client


@pytest.fixture(scope="module")
def channel(store: FeatureStore) -> Iterator[grpc.Channel]:
    core = ServerCore(store, ServerSettings())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    async def make() -> GrpcServer:
        return GrpcServer(core, engine="ladle")

    server: GrpcServer = run(make())
    port = run(server.start("127.0.0.1", 0))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    run(server.stop(1))
    loop.call_soon_threadsafe(loop.stop)


def sdk_answer(store: FeatureStore, full: bool = False) -> tuple[list[str], list[list[Any]], list[list[str]]]:
    response = store.get_online_features(
        FEATURES, {"commodity_code": CODES, "quantity": QUANTITIES}, full_feature_names=full
    )
    statuses = [[codec.STATUS_NAMES[s] for s in col] for col in response.statuses]
    return response.feature_names, response.values, statuses


@pytest.mark.parametrize("full", [False, True])
def test_rest_matches_the_sdk(store: FeatureStore, rest: TestClient, full: bool) -> None:
    body = {
        "features": FEATURES,
        "entities": {"commodity_code": CODES, "quantity": QUANTITIES},
        "full_feature_names": full,
    }
    reply = rest.post("/get-online-features", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    names, values, statuses = sdk_answer(store, full)
    assert data["metadata"]["feature_names"] == names
    assert [r["values"] for r in data["results"]] == values
    assert [r["statuses"] for r in data["results"]] == statuses
    assert values[names.index("order_value__order_value" if full else "order_value")] == [
        PRICES["brent"] * 2.0, None, PRICES["gold"] * 0.5,
    ]  # fmt: skip


def test_rest_accepts_request_context_and_refuses_a_missing_field(rest: TestClient) -> None:
    body = {"features": ["order_value:order_value"], "entities": {"commodity_code": ["gold"]}}
    reply = rest.post("/get-online-features", json={**body, "request_context": {"quantity": [2.0]}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][1]["values"] == [PRICES["gold"] * 2.0]
    missing = rest.post("/get-online-features", json=body)
    assert missing.status_code == 400
    detail = json.loads(missing.json())
    assert detail["class"] == "RequestDataNotFoundInEntityRowsException"
    assert "'quantity'" in detail["message"]


def _repeated(values: list[Any]) -> value_pb.RepeatedValue:
    out = value_pb.RepeatedValue()
    for v in values:
        item = out.val.add()
        if isinstance(v, str):
            item.string_val = v
        else:
            item.double_val = v
    return out


def _plain(value: value_pb.Value) -> Any:
    kind = value.WhichOneof("val")
    return None if kind in (None, "null_val") else getattr(value, kind)


@pytest.mark.parametrize("in_context", [False, True])
def test_grpc_matches_the_sdk(store: FeatureStore, channel: grpc.Channel, in_context: bool) -> None:
    stub = serving_grpc.ServingServiceStub(channel)
    request = serving_pb.GetOnlineFeaturesRequest(features=serving_pb.FeatureList(val=FEATURES))
    request.entities["commodity_code"].CopyFrom(_repeated(CODES))
    target = request.request_context if in_context else request.entities
    target["quantity"].CopyFrom(_repeated(QUANTITIES))
    reply = stub.GetOnlineFeatures(request, timeout=10)
    names, values, statuses = sdk_answer(store)
    assert list(reply.metadata.feature_names.val) == names
    assert [[_plain(v) for v in r.values] for r in reply.results] == values
    assert [[serving_pb.FieldStatus.Name(s) for s in r.statuses] for r in reply.results] == statuses
    # Output dtypes come from the ODFV schema: big_order is a bool, order_value a double.
    assert reply.results[names.index("big_order")].values[1].WhichOneof("val") == "bool_val"


def test_grpc_missing_request_field_is_invalid_argument(channel: grpc.Channel) -> None:
    stub = serving_grpc.ServingServiceStub(channel)
    request = serving_pb.GetOnlineFeaturesRequest(features=serving_pb.FeatureList(val=["order_value:order_value"]))
    request.entities["commodity_code"].CopyFrom(_repeated(["gold"]))
    with pytest.raises(grpc.RpcError) as info:
        stub.GetOnlineFeatures(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_feature_service_with_odfvs_through_rest_and_grpc(
    store: FeatureStore, rest: TestClient, channel: grpc.Channel
) -> None:
    want = store.get_online_features("model", {"commodity_code": CODES, "quantity": QUANTITIES})
    body = {"feature_service": "model", "entities": {"commodity_code": CODES, "quantity": QUANTITIES}}
    data = rest.post("/get-online-features", json=body).json()
    assert data["metadata"]["feature_names"] == want.feature_names == [
        "commodity_code", "order_value", "price_x2", "big_order",
    ]  # fmt: skip
    assert [r["values"] for r in data["results"]] == want.values
    request = serving_pb.GetOnlineFeaturesRequest(feature_service="model")
    request.entities["commodity_code"].CopyFrom(_repeated(CODES))
    request.request_context["quantity"].CopyFrom(_repeated(QUANTITIES))
    reply = serving_grpc.ServingServiceStub(channel).GetOnlineFeatures(request, timeout=10)
    assert [[_plain(v) for v in r.values] for r in reply.results] == want.values
