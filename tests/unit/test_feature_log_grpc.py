"""Served-feature logging through both gRPC engines: the request id in metadata, both ways; Feast's message intact."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from ladle import FeatureStore
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from ladle.server.core import ServerCore
from ladle.server.grpc_server import GrpcServer
from ladle.server.settings import ServerSettings
from unit.feature_log_repo import build


@pytest.fixture(scope="module", params=["ladle", "grpcio"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, FeatureStore]]:
    store = build(tmp_path_factory.mktemp(f"flog_grpc_{request.param}"), {"type": "sqlite", "path": "data/online.db"})
    core = ServerCore(store, ServerSettings())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    async def make() -> GrpcServer:
        return GrpcServer(core, engine=request.param)

    server: GrpcServer = run(make())
    port = run(server.start("127.0.0.1", 0))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield serving_grpc.ServingServiceStub(channel), store
    run(server.stop(1))
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    store.close()


def _request(**kind: Any) -> serving_pb.GetOnlineFeaturesRequest:
    entities = {
        "commodity_code": value_pb.RepeatedValue(val=[value_pb.Value(string_val="gold")]),
        "venue": value_pb.RepeatedValue(val=[value_pb.Value(string_val="NYMEX")]),
    }
    return serving_pb.GetOnlineFeaturesRequest(entities=entities, **kind)


def test_grpc_reads_carry_the_request_id_and_are_logged_under_it(served: tuple[Any, FeatureStore]) -> None:
    stub, store = served
    before = datetime.now(UTC)
    answer, call = stub.GetOnlineFeatures.with_call(
        _request(feature_service="price_model"), metadata=(("x-request-id", "grpc-7"),)
    )
    assert dict(call.initial_metadata())["x-request-id"] == "grpc-7"
    names = list(answer.metadata.feature_names.val)
    assert sorted(names[:2]) == ["commodity_code", "venue"] and names[2:] == ["current_price", "spread"]
    _, made = stub.GetOnlineFeatures.with_call(_request(feature_service="price_model"))
    generated = dict(made.initial_metadata())["x-request-id"]
    assert generated and generated != "grpc-7"
    _, listed = stub.GetOnlineFeatures.with_call(
        _request(features=serving_pb.FeatureList(val=["prices:current_price"]))
    )
    assert "x-request-id" not in dict(listed.initial_metadata())
    log = store.get_feature_log("price_model", start=before).to_pandas()
    assert sorted(log["request_id"]) == sorted(["grpc-7", generated])
    assert set(log["venue"]) == {"NYMEX"} and set(log["prices__current_price__status"]) == {"PRESENT"}
