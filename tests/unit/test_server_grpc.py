"""gRPC in-process on an ephemeral port: ServingService, GrpcFeatureServer, health, reflection, wire contract."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

import ladle
from ladle import FeatureStore
from ladle.retrieval.response import OnlineResponse
from ladle.server._proto.feast.serving import GrpcServer_pb2 as listen_pb
from ladle.server._proto.feast.serving import GrpcServer_pb2_grpc as listen_grpc
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from ladle.server.core import ServerCore
from ladle.server.grpc_server import GrpcServer
from ladle.server.settings import ServerSettings
from ladle.server.wire import online_response_bytes
from ladle.types import PRIMITIVES, Array, DType, ValueType
from unit.server_repo import EVENT_TIME, PRICES, build_repo

PRESENT, NOT_FOUND = serving_pb.PRESENT, serving_pb.NOT_FOUND


@pytest.fixture(scope="module", params=["ladle", "grpcio"])
def channel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    path = tmp_path_factory.mktemp("grpc_repo")
    build_repo(path).store.close()
    store = FeatureStore(repo_path=path)
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
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    run(server.stop(1))
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    store.close()


def strings(*values: str) -> value_pb.RepeatedValue:
    return value_pb.RepeatedValue(val=[value_pb.Value(string_val=v) for v in values])


def online_request(features: list[str], **entities: value_pb.RepeatedValue) -> serving_pb.GetOnlineFeaturesRequest:
    return serving_pb.GetOnlineFeaturesRequest(features=serving_pb.FeatureList(val=features), entities=entities)


def by_name(response: serving_pb.GetOnlineFeaturesResponse) -> dict[str, Any]:
    return dict(zip(response.metadata.feature_names.val, response.results, strict=True))


def test_serving_info(channel: grpc.Channel) -> None:
    info = serving_grpc.ServingServiceStub(channel).GetFeastServingInfo(serving_pb.GetFeastServingInfoRequest())
    assert info.version == ladle.__version__


def test_get_online_features_typed_values(channel: grpc.Channel) -> None:
    request = online_request(
        ["commodity_price_features:current_price", "commodity_price_features:volume_24h"],
        commodity_code=strings("crude_oil_wti", "nope"),
    )
    response = serving_grpc.ServingServiceStub(channel).GetOnlineFeatures(request)
    cols = by_name(response)
    assert list(cols) == ["commodity_code", "current_price", "volume_24h"]
    assert [v.string_val for v in cols["commodity_code"].values] == ["crude_oil_wti", "nope"]
    assert list(cols["commodity_code"].statuses) == [PRESENT, PRESENT]
    assert cols["current_price"].values[0].double_val == PRICES["crude_oil_wti"][0]
    assert cols["current_price"].values[1].WhichOneof("val") is None  # missing -> empty Value, as Feast sends
    assert list(cols["current_price"].statuses) == [PRESENT, NOT_FOUND]
    assert cols["volume_24h"].values[0].int64_val == PRICES["crude_oil_wti"][2]
    stamp = cols["current_price"].event_timestamps[0]
    assert stamp.seconds == int(EVENT_TIME.timestamp())
    assert cols["current_price"].event_timestamps[1].seconds == 0
    assert cols["commodity_code"].event_timestamps[0].seconds == 0


def test_every_value_kind_of_a_view(channel: grpc.Channel) -> None:
    features = [f"station_features:{f}" for f in ("name", "active", "elevation", "readings", "code", "installed")]
    ids = value_pb.RepeatedValue(val=[value_pb.Value(int64_val=1)])
    response = serving_grpc.ServingServiceStub(channel).GetOnlineFeatures(online_request(features, station_id=ids))
    cols = {name: vec.values[0] for name, vec in by_name(response).items()}
    assert cols["station_id"].int64_val == 1
    assert cols["name"].string_val == "JFK"
    assert cols["active"].WhichOneof("val") == "bool_val" and cols["active"].bool_val is True
    assert cols["elevation"].WhichOneof("val") == "int32_val" and cols["elevation"].int32_val == 4
    assert list(cols["readings"].double_list_val.val) == [1.5, 2.5]
    assert cols["code"].bytes_val == b"\x00\x01"
    assert cols["installed"].unix_timestamp_val == int(datetime(2020, 5, 1, tzinfo=UTC).timestamp())


def test_feature_service_and_full_names_through_feast_listen(channel: grpc.Channel) -> None:
    request = serving_pb.GetOnlineFeaturesRequest(
        feature_service="price_model",
        entities={
            "commodity_code": strings("brent"),
            "station_id": value_pb.RepeatedValue(val=[value_pb.Value(int64_val=2)]),
        },
        full_feature_names=True,
        request_context={"ignored": strings("x")},
    )
    response = listen_grpc.GrpcFeatureServerStub(channel).GetOnlineFeatures(request)
    cols = by_name(response)
    names = list(cols)
    # Protobuf maps have no order, so the join-key columns come first in any order.
    assert set(names[:2]) == {"commodity_code", "station_id"}
    assert names[2:] == ["commodity_price_features__current_price", "station_features__name"]
    assert cols["station_features__name"].values[0].string_val == "SEA"


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (online_request(["nope:x"], commodity_code=strings("a")), grpc.StatusCode.NOT_FOUND, "nope"),
        (online_request(["commodity_price_features:current_price"], station_id=strings("a")),
         grpc.StatusCode.INVALID_ARGUMENT, "commodity_code"),
        (serving_pb.GetOnlineFeaturesRequest(entities={"commodity_code": strings("a")}),
         grpc.StatusCode.INVALID_ARGUMENT, "feature_service"),
        (online_request(["commodity_price_features:current_price"], commodity_code=strings(*["a"] * 10_001)),
         grpc.StatusCode.INVALID_ARGUMENT, "limit"),
        (online_request(["commodity_price_features:current_price"],
                        commodity_code=value_pb.RepeatedValue(val=[value_pb.Value(double_val=1.0)])),
         grpc.StatusCode.INVALID_ARGUMENT, "commodity_code"),
        (online_request(["commodity_price_features:current_price"],
                        commodity_code=value_pb.RepeatedValue.FromString(b"\x0a\x03\xa2\x02\x00")),
         grpc.StatusCode.INVALID_ARGUMENT, "not support"),
    ],
)  # fmt: skip
def test_errors_have_clear_codes(channel: grpc.Channel, request_: Any, code: grpc.StatusCode, words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        serving_grpc.ServingServiceStub(channel).GetOnlineFeatures(request_)
    assert info.value.code() == code
    assert words in (info.value.details() or "")


def test_push_and_write_rows_like_feast_listen(channel: grpc.Channel) -> None:
    stub = listen_grpc.GrpcFeatureServerStub(channel)
    now = datetime.now(UTC)
    pushed = stub.Push(
        listen_pb.PushRequest(
            stream_feature_view="price_push",
            features={"commodity_code": "zinc", "current_price": "2.75", "volume_24h": "12",
                      "event_timestamp": now.isoformat(), "created": now.isoformat()},
        )
    )  # fmt: skip
    assert pushed.status is True
    written = stub.WriteToOnlineStore(
        listen_pb.WriteToOnlineStoreRequest(
            feature_view_name="commodity_price_features",
            typed_features={
                "commodity_code": value_pb.Value(string_val="nickel"),
                "current_price": value_pb.Value(double_val=16.5),
                "price_change_24h": value_pb.Value(double_val=0.0),
                "volume_24h": value_pb.Value(int64_val=3),
                "event_timestamp": value_pb.Value(unix_timestamp_val=int((now - timedelta(minutes=1)).timestamp())),
            },
        )
    )
    assert written.status is True
    response = stub.GetOnlineFeatures(
        online_request(["live_prices:current_price", "commodity_price_features:volume_24h"],
                       commodity_code=strings("zinc", "nickel"))
    )  # fmt: skip
    cols = by_name(response)
    assert cols["current_price"].values[0].double_val == 2.75
    assert cols["volume_24h"].values[1].int64_val == 3


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda s: s.Push(listen_pb.PushRequest(stream_feature_view="nope", features={"a": "1"})),
         grpc.StatusCode.NOT_FOUND),
        (lambda s: s.Push(listen_pb.PushRequest(stream_feature_view="price_push", features={"a": "1"},
                                                typed_features={"b": value_pb.Value(int64_val=1)})),
         grpc.StatusCode.INVALID_ARGUMENT),
        (lambda s: s.Push(listen_pb.PushRequest(stream_feature_view="price_push",
                                                features={"commodity_code": "x", "volume_24h": "many"})),
         grpc.StatusCode.INVALID_ARGUMENT),
        (lambda s: s.WriteToOnlineStore(listen_pb.WriteToOnlineStoreRequest(feature_view_name="nope")),
         grpc.StatusCode.NOT_FOUND),
    ],
)  # fmt: skip
def test_bad_writes(channel: grpc.Channel, call: Any, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(listen_grpc.GrpcFeatureServerStub(channel))
    assert info.value.code() == code


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "feast.serving.ServingService", "GrpcFeatureServer"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))))
    names = {s.name for s in answer.list_services_response.service}
    assert {"feast.serving.ServingService", "GrpcFeatureServer", "grpc.health.v1.Health"} <= names


# -- the wire contract: names and field numbers from Feast's protos --------------------------------

CONTRACT = {
    "feast.types.Value": {
        "bytes_val": 1, "string_val": 2, "int32_val": 3, "int64_val": 4, "double_val": 5, "float_val": 6,
        "bool_val": 7, "unix_timestamp_val": 8, "bytes_list_val": 11, "string_list_val": 12, "int32_list_val": 13,
        "int64_list_val": 14, "double_list_val": 15, "float_list_val": 16, "bool_list_val": 17,
        "unix_timestamp_list_val": 18, "null_val": 19,
    },
    "feast.types.RepeatedValue": {"val": 1},
    "feast.serving.GetOnlineFeaturesRequest": {
        "feature_service": 1, "features": 2, "entities": 3, "full_feature_names": 4, "request_context": 5,
        "include_feature_view_version_metadata": 6,
    },
    "feast.serving.GetOnlineFeaturesResponse": {"metadata": 1, "results": 2, "status": 3},
    "feast.serving.GetOnlineFeaturesResponse.FeatureVector": {"values": 1, "statuses": 2, "event_timestamps": 3},
    "feast.serving.GetOnlineFeaturesResponseMetadata": {"feature_names": 1, "feature_view_metadata": 2},
    "feast.serving.FeatureList": {"val": 1},
    "feast.serving.GetFeastServingInfoResponse": {"version": 1},
    "feast.serving.FeatureReferenceV2": {"feature_view_name": 1, "feature_name": 2},
    "feast.serving.GetOnlineFeaturesRequestV2": {"features": 4, "entity_rows": 2, "project": 5},
    "feast.serving.FeatureViewMetadata": {"name": 1, "version": 2},
    "PushRequest": {"features": 1, "stream_feature_view": 2, "allow_registry_cache": 3, "to": 4, "typed_features": 5},
    "PushResponse": {"status": 1},
    "WriteToOnlineStoreRequest": {
        "features": 1, "feature_view_name": 2, "allow_registry_cache": 3, "typed_features": 4,
    },
    "WriteToOnlineStoreResponse": {"status": 1},
}  # fmt: skip


def test_messages_match_feasts_field_numbers() -> None:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    for message, fields in CONTRACT.items():
        descriptor = pool.FindMessageTypeByName(message)
        assert {f.name: f.number for f in descriptor.fields} == fields, message
    status = pool.FindEnumTypeByName("feast.serving.FieldStatus")
    assert {v.name: v.number for v in status.values} == {
        "INVALID": 0, "PRESENT": 1, "NULL_VALUE": 2, "NOT_FOUND": 3, "OUTSIDE_MAX_AGE": 4,
    }  # fmt: skip
    services = {
        "feast.serving.ServingService": {"GetFeastServingInfo", "GetOnlineFeatures"},
        "GrpcFeatureServer": {"Push", "WriteToOnlineStore", "GetOnlineFeatures"},
    }
    for name, methods in services.items():
        assert {m.name for m in pool.FindServiceByName(name).methods} == methods


def test_wire_bytes_of_a_request() -> None:
    # Hand-encoded as protobuf specifies: field 2 (FeatureList) then map field 3 entry {key=1, value=2}.
    request = online_request(["v:f"], k=value_pb.RepeatedValue(val=[value_pb.Value(int64_val=7)]))
    expected = b"\x12\x05\x0a\x03v:f" + b"\x1a\x09\x0a\x01k\x12\x04\x0a\x02\x20\x07"
    assert request.SerializeToString() == expected


def test_generated_stubs_are_current() -> None:
    import subprocess
    import sys

    script = Path(__file__).parents[2] / "scripts" / "gen_protos.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


# -- the hand-written response encoder against the generated classes --------------------------------

_FIELDS = {
    ValueType.BYTES: "bytes_val", ValueType.STRING: "string_val", ValueType.INT32: "int32_val",
    ValueType.INT64: "int64_val", ValueType.DOUBLE: "double_val", ValueType.FLOAT: "float_val",
    ValueType.BOOL: "bool_val", ValueType.UNIX_TIMESTAMP: "unix_timestamp_val",
}  # fmt: skip
_LISTS = {
    ValueType.BYTES_LIST: ("bytes_list_val", value_pb.BytesList),
    ValueType.STRING_LIST: ("string_list_val", value_pb.StringList),
    ValueType.INT32_LIST: ("int32_list_val", value_pb.Int32List),
    ValueType.INT64_LIST: ("int64_list_val", value_pb.Int64List),
    ValueType.DOUBLE_LIST: ("double_list_val", value_pb.DoubleList),
    ValueType.FLOAT_LIST: ("float_list_val", value_pb.FloatList),
    ValueType.BOOL_LIST: ("bool_list_val", value_pb.BoolList),
    ValueType.UNIX_TIMESTAMP_LIST: ("unix_timestamp_list_val", value_pb.Int64List),
}
_STRATEGIES = {
    ValueType.BYTES: st.binary(max_size=8),
    ValueType.STRING: st.text(max_size=8),
    ValueType.INT32: st.integers(-(2**31), 2**31 - 1),
    ValueType.INT64: st.integers(-(2**63), 2**63 - 1),
    ValueType.DOUBLE: st.floats(allow_nan=False),
    ValueType.FLOAT: st.floats(width=32, allow_nan=False),
    ValueType.BOOL: st.booleans(),
    ValueType.UNIX_TIMESTAMP: st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
}


def _expected_value(dtype: DType, value: Any) -> value_pb.Value:
    if value is None:
        return value_pb.Value()
    seconds = lambda d: math.floor(d.timestamp())  # noqa: E731
    if dtype.is_list:
        field, kind = _LISTS[dtype.value_type]
        items = [seconds(x) for x in value] if dtype.value_type == ValueType.UNIX_TIMESTAMP_LIST else value
        return value_pb.Value(**{field: kind(val=items)})
    if dtype.value_type == ValueType.UNIX_TIMESTAMP:
        value = seconds(value)
    return value_pb.Value(**{_FIELDS[dtype.value_type]: value})


@st.composite
def responses(draw: st.DrawFn) -> tuple[OnlineResponse, dict[str, DType]]:
    rows = draw(st.integers(0, 4) | st.integers(16, 40) | st.integers(1001, 1010))  # every encoder path
    # past 40 rows, 16-40 drawn rows repeat to the length (drawing 1,000 values a column, one at a
    # time, made this the slowest test of the suite; the encoder sees the same path and sizes)
    drawn = rows if rows <= 40 else draw(st.integers(16, 40))
    columns = draw(st.lists(st.sampled_from([*PRIMITIVES, *(Array(p) for p in PRIMITIVES)]), min_size=1, max_size=5))
    stamps = st.lists(st.integers(0, 2**62 // 1000), min_size=drawn, max_size=drawn)

    def sized(cells: list[Any]) -> list[Any]:
        return [cells[i % drawn] for i in range(rows)] if cells else cells

    names, values, statuses, times, dtypes = [], [], [], [], {}
    for i, dtype in enumerate(columns):
        element = _STRATEGIES[(dtype.element or dtype).value_type]
        value = st.lists(element, max_size=3) if dtype.is_list else element
        names.append(f"c{i}")
        dtypes[f"c{i}"] = dtype
        cell = st.none() | value if draw(st.booleans()) else value  # columns with and without nulls
        values.append(sized(draw(st.lists(cell, min_size=drawn, max_size=drawn))))
        statuses.append(sized(draw(st.lists(st.integers(0, 4), min_size=drawn, max_size=drawn))))
        times.append(sized(draw(stamps)))
    return OnlineResponse(names, values, statuses, times), dtypes


@settings(max_examples=100, deadline=None)
@given(responses())
def test_wire_bytes_parse_to_the_generated_message(case: tuple[OnlineResponse, dict[str, DType]]) -> None:
    response, dtypes = case
    expected = serving_pb.GetOnlineFeaturesResponse(
        metadata=serving_pb.GetOnlineFeaturesResponseMetadata(
            feature_names=serving_pb.FeatureList(val=response.feature_names)
        ),
        results=[
            serving_pb.GetOnlineFeaturesResponse.FeatureVector(
                values=[_expected_value(dtypes[name], v) for v in values],
                statuses=statuses,
                event_timestamps=[Timestamp(seconds=t // 10**6, nanos=t % 10**6 * 1000) for t in stamps],
            )
            for name, values, statuses, stamps in zip(
                response.feature_names, response.values, response.statuses, response.event_timestamps, strict=True
            )
        ],
    )
    assert serving_pb.GetOnlineFeaturesResponse.FromString(online_response_bytes(response, dtypes)) == expected


_ENTITY_VALUES = st.one_of(
    st.builds(lambda s: value_pb.Value(string_val=s), st.text(max_size=5)),
    st.builds(lambda i: value_pb.Value(int64_val=i), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda i: value_pb.Value(int32_val=i), st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda b: value_pb.Value(bool_val=b), st.booleans()),
    st.just(value_pb.Value()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ENTITY_VALUES, max_size=8))
def test_entity_columns_read_fast_give_the_exact_values(values: list[value_pb.Value]) -> None:
    """The fast path of ``from_repeated`` (one attribute per value) agrees with reading each value exactly."""
    from ladle.server import codec

    column = value_pb.RepeatedValue(val=values)
    assert codec.from_repeated(column) == [codec.from_value(v) for v in values]
