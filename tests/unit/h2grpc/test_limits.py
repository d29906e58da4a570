"""Limits: message size, bytes waiting per connection, concurrent streams, decompression bombs."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Callable

import grpc
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from ladle.server.h2grpc import Limits, Status

from .support import (
    DATA,
    END_STREAM,
    MAX_FRAME,
    RST_STREAM,
    SETTINGS,
    H2Client,
    MiB,
    RawClient,
    Served,
    State,
    frame,
    grpc_message,
    rpc_error,
    unary,
)

pytestmark = pytest.mark.timeout(60)


def test_request_over_the_message_limit_is_resource_exhausted(channel: grpc.Channel) -> None:
    peer = unary(channel, "Peer")(b"", timeout=5)
    error = rpc_error(lambda: unary(channel, "Digest")(bytes(4 * MiB + 1), timeout=10))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert unary(channel, "Echo")(b"still here", timeout=5) == b"still here"
    assert unary(channel, "Peer")(b"", timeout=5) == peer  # the same connection


def test_request_over_a_small_limit_raw(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(max_message_bytes=1000))
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/Echo")
        client.send(frame(DATA, 0, 1, grpc_message(bytes(2000))[:1500]))  # the request is not over yet
        response = client.response(1)
        assert response.status == Status.RESOURCE_EXHAUSTED
        assert response.headers is not None and response.headers[b":status"] == b"200"  # Trailers-Only
        assert response.data == b""
        client.until(lambda: response.reset is not None)
        assert response.reset == ErrorCodes.NO_ERROR  # answered early: the rest of the request is not wanted
        client.send(frame(DATA, END_STREAM, 1, bytes(505)))  # still in flight when the RST arrived: ignored
        client.unary(3, "/test.Svc/Echo", bytes(1000))
        assert client.response(3).messages == [bytes(1000)]


def test_requests_waiting_on_a_connection_have_a_budget(make_server: Callable[..., Served]) -> None:
    """Over max_buffered_bytes of unfinished requests on one connection: the call that goes over is refused."""
    served = make_server(Limits(max_buffered_bytes=MiB))
    with RawClient(served.port) as client:
        first = grpc_message(bytes(700_000))
        second = grpc_message(bytes(700_000))
        client.headers(1, "/test.Svc/Digest")
        for start in range(0, 600_000, MAX_FRAME):  # 600 KB of the first request, not ended
            client.send(frame(DATA, 0, 1, first[start : min(start + MAX_FRAME, 600_000)]))
        client.headers(3, "/test.Svc/Digest")
        for start in range(0, 600_000, MAX_FRAME):  # the second one goes over 1 MiB
            client.send(frame(DATA, 0, 3, second[start : min(start + MAX_FRAME, 600_000)]))
        refused = client.response(3)
        assert refused.status == Status.RESOURCE_EXHAUSTED
        assert "bytes of requests wait on this connection" in refused.message
        for start in range(600_000, len(first), MAX_FRAME):  # the first one still completes
            end = min(start + MAX_FRAME, len(first))
            client.send(frame(DATA, END_STREAM if end == len(first) else 0, 1, first[start:end]))
        answer = json.loads(client.response(1).messages[0])
        assert answer["len"] == 700_000
        client.unary(5, "/test.Svc/Echo", b"after")  # and the budget is free again
        assert client.response(5).messages == [b"after"]


def test_bidi_message_declared_over_the_limit_is_refused_at_once(served: Served) -> None:
    """The 5-byte prefix announces 5 MiB: no need to wait for the 4 MiB limit to fill up."""
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/BidiEcho")
        client.send(frame(DATA, 0, 1, struct.pack(">BI", 0, 5 * MiB) + b"abc"))
        response = client.response(1)
        client.until(lambda: response.reset is not None)
    assert response.status == Status.RESOURCE_EXHAUSTED
    assert response.reset == ErrorCodes.NO_ERROR


def test_decompression_bomb_is_resource_exhausted(served: Served) -> None:
    bomb = gzip.compress(bytes(8 * MiB))  # 8 KiB on the wire, 8 MiB decompressed
    with H2Client(served.port) as client:
        body = grpc_message(bomb, compressed=True)
        response = client.wait(client.start("/test.Svc/Digest", body, extra=[("grpc-encoding", "gzip")]))
    assert response.status == Status.RESOURCE_EXHAUSTED


def test_max_concurrent_streams(make_server: Callable[..., Served], state: State) -> None:
    served = make_server(Limits(max_concurrent_streams=2))
    with RawClient(served.port) as client:
        client.unary(1, "/test.Svc/Hang", b"mcs-1:60")
        client.unary(3, "/test.Svc/Hang", b"mcs-3:60")
        assert state.probe("mcs-1").started.wait(5) and state.probe("mcs-3").started.wait(5)
        client.unary(5, "/test.Svc/Hang", b"mcs-5:60")
        refused = client.response(5)
        assert refused.reset == ErrorCodes.REFUSED_STREAM
        assert refused.headers is None and refused.data == b""
        assert not state.probe("mcs-5").started.wait(0.05)
        first = client.frames[0]
        assert first.type == SETTINGS
        assert (SettingCodes.MAX_CONCURRENT_STREAMS, 2) in [
            struct.unpack(">HI", first.payload[i : i + 6]) for i in range(0, len(first.payload), 6)
        ]
        client.send(frame(RST_STREAM, 0, 1, struct.pack(">I", ErrorCodes.CANCEL)))  # frees a slot
        assert state.probe("mcs-1").cancelled.wait(2)
        client.unary(7, "/test.Svc/Echo", b"fits again")
        assert client.response(7).messages == [b"fits again"]
