"""Graceful stop: no new connections, GOAWAY, running calls finish within the grace period."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import grpc
import pytest
from h2.errors import ErrorCodes

from ladle.server.h2grpc import Status

from .support import (
    GOAWAY,
    RawClient,
    Served,
    State,
    rpc_error,
    unary,
)

pytestmark = pytest.mark.timeout(60)


def refusing_connections(served: Served, within: float) -> bool:
    """Whether connecting to the stopping server is refused, trying until ``within`` seconds have passed.

    It first waits for ``stop()`` to begin: a connect racing the listening socket's close can be accepted
    by asyncio (3.11) just as the server closes, and that socket then leaks (``Server._attach`` asserts).
    """
    deadline = time.monotonic() + within
    while not served.server.stopping and time.monotonic() < deadline:
        time.sleep(0.002)
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", served.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            pass  # the listening socket closed during our handshake: try again
        time.sleep(0.01)
    return False


def test_graceful_stop_lets_the_call_finish(make_server: Callable[..., Served], state: State) -> None:
    served = make_server()
    probe = state.probe("stop-ok")
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as ch:
        call = unary(ch, "Sleep").future(b"stop-ok:0.5", timeout=10)
        assert probe.started.wait(5)
        began = time.monotonic()
        stopping = served.stop_in_background(grace=5)
        assert refusing_connections(served, within=0.3)
        assert not call.done()  # new connections are refused while the call still runs
        assert call.result(timeout=5) == b"slept:stop-ok"
        call_done = time.monotonic()
        stopping.result(timeout=6)
        stopped = time.monotonic()
    assert stopped - began < 2.0  # well before the 5 s grace period
    assert stopped - call_done < 0.5


def test_graceful_stop_on_the_wire(make_server: Callable[..., Served], state: State) -> None:
    served = make_server()
    with RawClient(served.port) as client:
        client.unary(1, "/test.Svc/Sleep", b"stop-raw:0.3")
        assert state.probe("stop-raw").started.wait(5)
        stopping = served.stop_in_background(grace=5)
        while not [f for f in client.frames if f.type == GOAWAY]:
            client.receive()
        goaway = next(f for f in client.frames if f.type == GOAWAY)
        assert goaway.error_code == ErrorCodes.NO_ERROR
        assert int.from_bytes(goaway.payload[:4], "big") == 1  # the last stream it will serve
        client.unary(3, "/test.Svc/Echo", b"too late")
        assert client.response(3).reset == ErrorCodes.REFUSED_STREAM
        finished = client.response(1)
        assert finished.status == Status.OK and finished.messages == [b"slept:stop-raw"]
        client.until_closed()  # and then the server closes the connection
        stopping.result(timeout=5)


def test_stop_without_calls_is_immediate(make_server: Callable[..., Served]) -> None:
    served = make_server()
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as ch:
        assert unary(ch, "Echo")(b"x", timeout=5) == b"x"  # an idle, open connection
        began = time.monotonic()
        served.stop(grace=5)
        assert time.monotonic() - began < 0.5


def test_stop_grace_period_bounds_a_call_that_never_ends(make_server: Callable[..., Served], state: State) -> None:
    served = make_server()
    probe = state.probe("stop-hang")
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as ch:
        call = unary(ch, "Hang").future(b"stop-hang:60", timeout=10)
        assert probe.started.wait(5)
        began = time.monotonic()
        served.stop(grace=0.5)
        elapsed = time.monotonic() - began
        assert 0.45 <= elapsed < 1.5
        assert probe.cancelled.wait(2)
        error = rpc_error(lambda: call.result(timeout=5))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
