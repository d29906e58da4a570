"""Streams: many calls on one connection, stream states, deadlines, cancellation, streaming calls, GOAWAY."""

from __future__ import annotations

import gc
import queue
import struct
import time
import warnings
from collections.abc import Iterator

import grpc
import pytest
from h2.errors import ErrorCodes

from ladle.server.h2grpc import Status

from .support import (
    DATA,
    END_STREAM,
    GOAWAY,
    HEADERS,
    RST_STREAM,
    H2Client,
    RawClient,
    Served,
    State,
    frame,
    grpc_message,
    rpc_error,
    unary,
)

pytestmark = pytest.mark.timeout(60)


def test_more_than_5000_calls_on_one_channel(channel: grpc.Channel) -> None:
    peer = unary(channel, "Peer")
    first_peer = peer(b"", timeout=5)
    echo = unary(channel, "Echo")
    wrong = [i for i in range(6000) if echo(b"%d" % i, timeout=5) != b"%d" % i]
    assert wrong == []
    assert peer(b"", timeout=5) == first_peer  # one connection did it all: 6002 streams, ids past 12000


def test_100_concurrent_calls_on_one_connection(channel: grpc.Channel) -> None:
    """As many calls at once as the default SETTINGS_MAX_CONCURRENT_STREAMS (100) allows."""
    gate = unary(channel, "Gate")  # answers only once all 100 calls are running at the same time
    futures = [gate.future(b"conc:100:%d" % i, timeout=10) for i in range(100)]
    answers = [f.result() for f in futures]
    requests = [a.split(b"|")[0] for a in answers]
    assert requests == [b"conc:100:%d" % i for i in range(100)]
    assert len({a.split(b"|")[1] for a in answers}) == 1  # one peer address: one connection


def test_no_frame_after_a_stream_is_closed(served: Served) -> None:
    """A request with END_STREAM on its HEADERS, answered at once: the stream is closed, nothing may follow."""
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/Echo", method="GET", end_stream=True)
        client.unary(3, "/test.Svc/Echo", b"next")
        client.response(1)
        client.response(3)
        on_stream_1 = [f.type for f in client.frames if f.stream == 1]
    assert on_stream_1 == [HEADERS]  # RFC 9113 5.1: no frame but PRIORITY on a closed stream


def test_client_goaway_lets_running_calls_finish(served: Served, state: State) -> None:
    with RawClient(served.port) as client:
        client.unary(1, "/test.Svc/Sleep", b"client-goaway:0.1")
        assert state.probe("client-goaway").started.wait(5)
        client.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, ErrorCodes.NO_ERROR)))
        response = client.response(1)
        assert response.status == Status.OK and response.messages == [b"slept:client-goaway"]
        client.until_closed()  # nothing left to do: the server closes


def test_deadline_exceeded_stops_the_handler(channel: grpc.Channel, state: State) -> None:
    probe = state.probe("deadline-grpcio")
    started = time.monotonic()
    error = rpc_error(lambda: unary(channel, "Sleep")(b"deadline-grpcio:0.4", timeout=0.1))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert probe.cancelled.wait(2)
    assert probe.finished.is_set()
    time.sleep(max(0.0, started + 0.55 - time.monotonic()))  # past the handler's 0.4 s sleep
    assert not probe.slept.is_set()


def test_server_enforces_grpc_timeout(served: Served, state: State) -> None:
    """The client never resets the stream: the server's own deadline ends the call."""
    probe = state.probe("deadline-raw")
    with H2Client(served.port) as client:
        started = time.monotonic()
        response = client.call("/test.Svc/Sleep", b"deadline-raw:5", extra=[("grpc-timeout", "100m")])
        elapsed = time.monotonic() - started
    assert response.status == Status.DEADLINE_EXCEEDED
    assert 0.09 <= elapsed < 1.5
    assert probe.cancelled.wait(2)
    assert not probe.slept.is_set()


def test_grpc_timeout_reaches_the_call_context(channel: grpc.Channel, served: Served) -> None:
    remaining = float(unary(channel, "Deadline")(b"", timeout=3))
    assert 2.0 < remaining <= 3.05  # grpcio may round its grpc-timeout up a little
    assert unary(channel, "Deadline")(b"") == b"none"
    with H2Client(served.port) as client:
        remaining = float(client.call("/test.Svc/Deadline", b"", extra=[("grpc-timeout", "2S")]).messages[0])
    assert 1.5 < remaining <= 2.0


def test_client_cancel_cancels_the_handler(channel: grpc.Channel, state: State) -> None:
    probe = state.probe("cancel-unary")
    future = unary(channel, "Hang").future(b"cancel-unary:60", timeout=10)
    assert probe.started.wait(5)
    assert future.cancel()
    assert probe.cancelled.wait(2)
    assert probe.finished.is_set() and not probe.slept.is_set()
    assert unary(channel, "Echo")(b"ok", timeout=5) == b"ok"


def test_client_cancel_cancels_a_streaming_handler(channel: grpc.Channel, state: State) -> None:
    probe = state.probe("cancel-stream")
    call = channel.unary_stream("/test.Svc/StreamHang", request_serializer=None, response_deserializer=None)
    responses = call(b"cancel-stream", timeout=10)
    assert next(responses) == b"first"
    assert probe.started.wait(5)
    responses.cancel()
    assert probe.cancelled.wait(2)
    assert probe.finished.is_set() and not probe.slept.is_set()


def test_rst_stream_cancels_the_handler(served: Served, state: State) -> None:
    probe = state.probe("cancel-rst")
    with H2Client(served.port) as client:
        sid = client.start("/test.Svc/Hang", grpc_message(b"cancel-rst:60"))
        assert probe.started.wait(5)
        client.h2.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
        assert probe.cancelled.wait(2)
        assert client.call("/test.Svc/Echo", b"ok").messages == [b"ok"]  # the connection is fine
        assert not [f for f in client.frames if f.stream == sid]  # nothing more on the cancelled stream
    assert not probe.slept.is_set()


def test_reset_before_the_handler_runs(served: Served, state: State) -> None:
    """HEADERS, DATA and RST_STREAM in one write: the call is over before its task first runs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RawClient(served.port) as client:
            request = client.headers_frame(1, "/test.Svc/Hang") + frame(DATA, END_STREAM, 1, grpc_message(b"early:60"))
            client.send(request + frame(RST_STREAM, 0, 1, struct.pack(">I", ErrorCodes.CANCEL)))
            client.unary(3, "/test.Svc/Echo", b"after")  # the loop has run the cancelled task's step by now
            assert client.response(3).messages == [b"after"]
            assert not [f for f in client.frames if f.stream == 1]
        deadline = time.monotonic() + 2  # the handler's coroutine is only garbage once the connection is
        while served.server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()
    assert not state.probe("early").started.is_set()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_server_streaming_in_order(channel: grpc.Channel) -> None:
    call = channel.unary_stream("/test.Svc/Count", request_serializer=None, response_deserializer=None)
    assert list(call(b"1000", timeout=10)) == [b"%d" % i for i in range(1000)]
    assert list(call(b"0", timeout=10)) == []


def test_server_streaming_error_after_messages(channel: grpc.Channel) -> None:
    call = channel.unary_stream("/test.Svc/CountThenFail", request_serializer=None, response_deserializer=None)
    received: list[bytes] = []
    error = rpc_error(lambda: received.extend(call(b"", timeout=5)))
    assert received == [b"0", b"1", b"2"]
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details() == "stopped at 3"


def test_bidi_echo_answers_each_request_before_the_next(channel: grpc.Channel) -> None:
    echoed: queue.Queue[bytes] = queue.Queue()

    def requests() -> Iterator[bytes]:
        for i in range(50):
            yield b"m%d" % i
            echoed.get(timeout=5)  # the next request only after the echo of this one

    call = channel.stream_stream("/test.Svc/BidiEcho", request_serializer=None, response_deserializer=None)
    received: list[bytes] = []
    for response in call(requests(), timeout=10):
        received.append(response)
        echoed.put(response)
    assert received == [b"m%d" % i for i in range(50)]


def test_bidi_with_no_requests(channel: grpc.Channel) -> None:
    call = channel.stream_stream("/test.Svc/BidiEcho", request_serializer=None, response_deserializer=None)
    assert list(call(iter([]), timeout=5)) == []
