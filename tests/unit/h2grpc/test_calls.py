"""gRPC calls on the built-in server: unary round trips, statuses and errors, metadata, compression."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Callable

import grpc
import pytest

from ladle.server.h2grpc import Status

from .support import (
    HEADERS,
    H2Client,
    RawClient,
    Served,
    grpc_message,
    rpc_error,
    unary,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("name", ["Echo", "AsyncEcho"])
def test_unary_echo_round_trip(channel: grpc.Channel, name: str) -> None:
    call = unary(channel, name)
    for request in (b"", b"x", bytes(range(256)) * 7):
        response, rpc = call.with_call(request, timeout=5)
        assert response == request
        assert rpc.code() == grpc.StatusCode.OK


def test_handlers_cannot_change_metadata_other_calls_see(channel: grpc.Channel) -> None:
    """Heads are cached per connection, so the metadata a handler gets must be read-only."""
    before = json.loads(unary(channel, "Meta")(b"", timeout=5))
    for _ in range(3):
        error = rpc_error(lambda: unary(channel, "WriteMeta")(b"", timeout=5))
        assert error.code() == grpc.StatusCode.INTERNAL
    after = json.loads(unary(channel, "Meta")(b"", timeout=5))
    assert "x-written" not in after
    assert {k: v for k, v in after.items() if k != "grpc-timeout"} == {
        k: v for k, v in before.items() if k != "grpc-timeout"
    }


@pytest.mark.parametrize("name", ["NotFound", "AsyncNotFound"])
def test_grpc_error_status_and_message(channel: grpc.Channel, name: str) -> None:
    error = rpc_error(lambda: unary(channel, name)(b"", timeout=5))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "näh 100%"


def test_grpc_message_is_percent_encoded_on_the_wire(served: Served) -> None:
    with H2Client(served.port) as client:
        response = client.call("/test.Svc/NotFound", b"")
    assert response.headers is not None and response.trailers is None  # Trailers-Only
    assert response.headers[b":status"] == b"200"
    assert response.headers[b"grpc-status"] == b"5"
    assert response.headers[b"grpc-message"] == b"n%C3%A4h 100%25"


def test_long_error_message_is_cut_to_fit_clients_metadata_limits(served: Served) -> None:
    """A 40000-byte message is cut to 2000 characters (grpcio refuses trailers over its metadata limit)."""
    with RawClient(served.port) as client:
        client.unary(1, "/test.Svc/LongError", b"40000")
        response = client.response(1)
        frames = client.frames
    assert [f.type for f in frames if f.stream == 1] == [HEADERS]
    assert response.status == Status.ABORTED
    assert response.message == "x" * 2000 + " ... (truncated)"


@pytest.mark.parametrize(("name", "detail"), [("Crash", "boom"), ("AsyncCrash", "async boom")])
def test_unexpected_exception_is_internal_and_the_server_keeps_serving(
    channel: grpc.Channel, name: str, detail: str
) -> None:
    peer = unary(channel, "Peer")(b"", timeout=5)
    error = rpc_error(lambda: unary(channel, name)(b"", timeout=5))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert detail in (error.details() or "")
    assert unary(channel, "Echo")(b"ok", timeout=5) == b"ok"
    assert unary(channel, "Peer")(b"", timeout=5) == peer


def test_unknown_method_is_unimplemented(channel: grpc.Channel) -> None:
    error = rpc_error(lambda: channel.unary_unary("/test.Svc/Nope")(b"", timeout=5))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    error = rpc_error(lambda: channel.unary_unary("/other.Svc/Echo")(b"", timeout=5))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_non_grpc_content_type_is_http_415(served: Served) -> None:
    with H2Client(served.port) as client:
        response = client.call("/test.Svc/Echo", b"x", content_type="application/json")
    assert response.headers is not None
    assert response.headers[b":status"] == b"415"
    assert response.data == b""


@pytest.mark.parametrize("end_stream_on_headers", [True, False])
def test_get_is_not_a_call(served: Served, end_stream_on_headers: bool) -> None:
    with H2Client(served.port) as client:
        body = None if end_stream_on_headers else grpc_message(b"x")
        response = client.wait(client.start("/test.Svc/Echo", body, method="GET"))
        assert client.call("/test.Svc/Echo", b"after").messages == [b"after"]
    assert response.headers is not None
    assert response.headers[b":status"] != b"200"
    assert response.status == Status.UNIMPLEMENTED
    assert response.data == b""


@pytest.mark.parametrize(
    "body",
    [None, b"", grpc_message(b"a") + grpc_message(b"b"), grpc_message(b"abc")[:-1]],
    ids=["end-on-headers", "empty-data", "two-messages", "partial-message"],
)
def test_unary_needs_exactly_one_request_message(served: Served, body: bytes | None) -> None:
    with H2Client(served.port) as client:
        response = client.wait(client.start("/test.Svc/Echo", body))
        assert client.call("/test.Svc/Echo", b"after").messages == [b"after"]
    assert response.status == Status.INTERNAL
    assert response.data == b""


@pytest.mark.parametrize(
    ("compression", "encoding"), [(grpc.Compression.Gzip, "gzip"), (grpc.Compression.Deflate, "deflate")]
)
def test_compressed_request_from_grpcio(channel: grpc.Channel, compression: grpc.Compression, encoding: str) -> None:
    request = b"feature store " * 50_000
    answer = json.loads(unary(channel, "Digest")(request, timeout=10, compression=compression))
    assert answer == {"len": len(request), "sha256": hashlib.sha256(request).hexdigest(), "encoding": encoding}


def deflate(data: bytes) -> bytes:
    return zlib.compress(data)


@pytest.mark.parametrize(
    ("encoding", "compress", "status"),
    [
        ("gzip", gzip.compress, Status.OK),
        ("deflate", deflate, Status.OK),
        ("identity", gzip.compress, Status.INTERNAL),  # compressed flag without an encoding
        ("gzip", lambda data: b"not gzip at all", Status.INTERNAL),
        ("snappy", gzip.compress, Status.UNIMPLEMENTED),  # an encoding the server does not know
    ],
    ids=["gzip", "deflate", "identity", "corrupt", "snappy"],
)
def test_compressed_request_raw(
    served: Served, encoding: str, compress: Callable[[bytes], bytes], status: Status
) -> None:
    request = b"abc" * 1000
    body = grpc_message(compress(request), compressed=True)
    with H2Client(served.port) as client:
        response = client.wait(client.start("/test.Svc/Digest", body, extra=[("grpc-encoding", encoding)]))
    assert response.status == status
    if status == Status.OK:
        assert json.loads(response.messages[0])["sha256"] == hashlib.sha256(request).hexdigest()
    else:
        assert response.data == b""
