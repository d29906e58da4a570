"""Each abuse limit of :class:`Limits` enforced at its configured value (the attack suite is tests/security/)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from ladle.server.h2grpc import Limits, Status

from .support import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    Frame,
    MiB,
    RawClient,
    Served,
    State,
    frame,
    grpc_message,
    request_headers,
)

pytestmark = pytest.mark.timeout(60)
PING_FRAME = frame(PING, 0, 0, bytes(8))


def goaway(frames: list[Frame]) -> Frame:
    found = [f for f in frames if f.type == GOAWAY]
    assert found, f"no GOAWAY in {frames[-5:]}"
    return found[-1]


def test_control_frames_over_the_rate_get_enhance_your_calm(make_server: Callable[..., Served]) -> None:
    """A burst of up to ``control_frames_per_second`` control frames passes; one more closes the connection.

    The client's SETTINGS is the first control frame. The rate is low (10/s) so the refill during
    the test (a few ms) stays far below one token.
    """
    served = make_server(Limits(control_frames_per_second=10))
    with RawClient(served.port) as ok:  # SETTINGS + 9 PINGs: all answered, connection open
        ok.send(PING_FRAME * 9)
        ok.until(lambda: sum(f.type == PING for f in ok.frames) == 9)
        assert ok.quiet(0.2)
    with RawClient(served.port) as over:  # SETTINGS + 10 PINGs: one too many
        over.send(PING_FRAME * 10)
        closing = over.until_closed()
        assert goaway(closing).error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert sum(f.type == PING for f in over.frames) == 9


@pytest.mark.parametrize(
    "flood",
    [
        frame(SETTINGS, 0, 0),
        frame(PING, 0, 0, bytes(8)),
        frame(0x20, 0, 0, b"unknown type"),
        frame(2, 0, 1, bytes(5)),  # PRIORITY
        frame(WINDOW_UPDATE, 0, 99, struct.pack(">I", 1)),  # for a stream that does not exist: no effect
    ],
    ids=["settings", "ping", "unknown", "priority", "window-update-no-op"],
)
def test_every_kind_of_control_frame_counts(make_server: Callable[..., Served], flood: bytes) -> None:
    served = make_server(Limits(control_frames_per_second=50))
    with RawClient(served.port) as client:
        client.unary(99, "/test.Svc/Echo", b"x")  # stream 99 exists, then is closed
        client.response(99)
        client.send(flood * 60)
        assert goaway(client.until_closed()).error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_each_settings_entry_counts(make_server: Callable[..., Served]) -> None:
    """SETTINGS cost one control frame per entry: after the client's SETTINGS, 49 entries fit 50/s, 50 do not."""
    served = make_server(Limits(control_frames_per_second=50))
    entry = struct.pack(">HI", SettingCodes.INITIAL_WINDOW_SIZE, 65_535)
    with RawClient(served.port) as ok:
        ok.send(frame(SETTINGS, 0, 0, entry * 49))
        ok.until(lambda: sum(f.type == SETTINGS and f.flags == 1 for f in ok.frames) == 2)  # both acknowledged
        assert ok.quiet(0.1)
    with RawClient(served.port) as over:
        over.send(frame(SETTINGS, 0, 0, entry * 50))
        assert goaway(over.until_closed()).error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_empty_data_frames_count(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(control_frames_per_second=50))
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/Echo")
        client.send(frame(DATA, 0, 1) * 60)
        assert goaway(client.until_closed()).error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_resets_over_the_rate_get_enhance_your_calm(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(resets_per_second=10))
    cancel = struct.pack(">I", ErrorCodes.CANCEL)
    with RawClient(served.port) as ok:
        ok.send(b"".join(ok.headers_frame(s, "/test.Svc/Echo") + frame(RST_STREAM, 0, s, cancel)
                         for s in range(1, 20, 2)))  # fmt: skip
        ok.unary(21, "/test.Svc/Echo", b"after 10 resets")
        assert ok.response(21).messages == [b"after 10 resets"]
    with RawClient(served.port) as over:
        over.send(b"".join(over.headers_frame(s, "/test.Svc/Echo") + frame(RST_STREAM, 0, s, cancel)
                           for s in range(1, 22, 2)))  # fmt: skip
        assert goaway(over.until_closed()).error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_streams_over_max_concurrent_streams_count_as_resets(make_server: Callable[..., Served]) -> None:
    """A peer that ignores our SETTINGS_MAX_CONCURRENT_STREAMS spends the reset budget on refusals."""
    served = make_server(Limits(max_concurrent_streams=1, resets_per_second=5))
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/Echo")  # open, never ended
        client.send(b"".join(client.headers_frame(s, "/test.Svc/Echo") for s in range(3, 16, 2)))  # 7 refused
        closing = client.until_closed()
        refused = [f for f in closing if f.type == RST_STREAM]
        assert [f.error_code for f in refused] == [ErrorCodes.REFUSED_STREAM] * 5
        assert goaway(closing).error_code == ErrorCodes.ENHANCE_YOUR_CALM


def _split_block(client: RawClient, stream_id: int, pieces: int) -> bytes:
    block = client.encoder.encode(request_headers("/test.Svc/Echo", extra=[("x-pad", "p" * 64)]))
    size = -(-len(block) // pieces)
    chunks = [block[i : i + size] for i in range(0, len(block), size)]
    assert len(chunks) == pieces
    out = frame(HEADERS, 0, stream_id, chunks[0])
    for i, chunk in enumerate(chunks[1:], 1):
        out += frame(CONTINUATION, END_HEADERS if i == pieces - 1 else 0, stream_id, chunk)
    return out


def test_continuation_frames_per_header_block(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(max_continuation_frames=4))
    with RawClient(served.port) as ok:
        ok.send(_split_block(ok, 1, 5) + frame(DATA, END_STREAM, 1, grpc_message(b"four")))  # 4 CONTINUATIONs
        assert ok.response(1).messages == [b"four"]
    with RawClient(served.port) as over:
        over.send(_split_block(over, 1, 6))  # 5 CONTINUATIONs
        assert goaway(over.until_closed()).error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_endless_empty_continuation_frames_are_cut(served: Served) -> None:
    """CVE-2024-27316's shape: HEADERS without END_HEADERS, then empty CONTINUATION frames forever."""
    with RawClient(served.port) as client:
        block = client.encoder.encode(request_headers("/test.Svc/Echo"))
        client.send(frame(HEADERS, 0, 1, block) + frame(CONTINUATION, 0, 1) * 100)
        assert goaway(client.until_closed()).error_code == ErrorCodes.ENHANCE_YOUR_CALM


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def _busy(served: Served) -> int:
    return sum(1 for c in list(served.server.connections) if c.streams)


def test_max_connections_refuses_when_every_connection_has_a_call(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(max_connections=3))
    clients = [RawClient(served.port) for _ in range(3)]
    try:
        for client in clients:
            client.headers(1, "/test.Svc/Echo")  # a call in flight: its request has not arrived yet
        _wait_for(lambda: _busy(served) == 3)
        with RawClient(served.port) as fourth:
            assert goaway(fourth.until_closed(2)).error_code == ErrorCodes.ENHANCE_YOUR_CALM
        clients.pop().sock.close()
        _wait_for(lambda: len(served.server.connections) == 2)
        with RawClient(served.port) as again:
            again.unary(1, "/test.Svc/Echo", b"room again")
            assert again.response(1).messages == [b"room again"]
        for client in clients:  # the calls in flight were never disturbed
            client.send(frame(DATA, END_STREAM, 1, grpc_message(b"late")))
            assert client.response(1).messages == [b"late"]
    finally:
        for client in clients:
            client.sock.close()


def _closed_by_server(sock: socket.socket) -> bool:
    """Read what the server sent (its SETTINGS) until it closes the connection; False on a timeout."""
    sock.settimeout(2)
    try:
        while sock.recv(1 << 16):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_at_the_cap_a_new_connection_displaces_the_longest_stalled(make_server: Callable[..., Served]) -> None:
    """Half-open connections (no preface) go first, oldest first; a connection with a call is never displaced."""
    served = make_server(Limits(max_connections=3))
    busy = RawClient(served.port)
    busy.headers(1, "/test.Svc/Echo")
    _wait_for(lambda: _busy(served) == 1)
    silent = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(2)]
    try:
        _wait_for(lambda: len(served.server.connections) == 3)
        time.sleep(0.05)
        with RawClient(served.port) as newcomer:
            newcomer.unary(1, "/test.Svc/Echo", b"welcome")
            assert newcomer.response(1).messages == [b"welcome"]
        assert _closed_by_server(silent[0])  # the oldest half-open connection was closed
        busy.send(frame(DATA, END_STREAM, 1, grpc_message(b"still here")))
        assert busy.response(1).messages == [b"still here"]
    finally:
        busy.sock.close()
        for sock in silent:
            sock.close()


def _held(served: Served) -> int:
    return int(served.loop.run(_pool_held(served)))


async def _pool_held(served: Served) -> int:
    return served.server.pool.held


def _wait_held(served: Served, expected: int) -> None:
    deadline = time.monotonic() + 5
    while _held(served) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _held(served) == expected


def test_connection_byte_budget_holds_blocked_responses(make_server: Callable[..., Served]) -> None:
    """Responses that wait for window count: exactly max_buffered_bytes fit, then streams are refused or reset."""
    served = make_server(Limits(max_buffered_bytes=120_010))
    with RawClient(served.port, {SettingCodes.INITIAL_WINDOW_SIZE: 0}) as client:
        client.unary(1, "/test.Svc/Big", b"60000")  # 60,005 bytes with the gRPC prefix: blocked
        client.unary(3, "/test.Svc/Big", b"60000")  # 120,010: exactly the budget
        client.until(lambda: 3 in client.responses)
        assert _held(served) == 120_010
        client.unary(5, "/test.Svc/Echo", b"")
        assert client.response(5).reset == ErrorCodes.REFUSED_STREAM  # full: no new stream
        client.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 60_005)))
        assert [len(m) for m in client.response(1).messages] == [60_000]
        client.unary(7, "/test.Svc/Big", b"60001")  # 60,006 + 60,005 > 120,010
        reset = client.response(7)
        assert reset.reset == ErrorCodes.ENHANCE_YOUR_CALM  # grpc clients see RESOURCE_EXHAUSTED
        assert _held(served) == 60_005
    _wait_held(served, 0)  # the closed connection gave everything back


def test_worker_byte_budget_spans_connections(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(max_worker_buffered_bytes=120_010))
    zero = {SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with RawClient(served.port, zero) as first, RawClient(served.port, zero) as second:
        first.unary(1, "/test.Svc/Big", b"60000")
        first.until(lambda: 1 in first.responses)
        second.unary(1, "/test.Svc/Big", b"60000")
        second.until(lambda: 1 in second.responses)
        assert _held(served) == 120_010
        second.unary(3, "/test.Svc/Echo", b"")
        assert second.response(3).reset == ErrorCodes.REFUSED_STREAM
        first.send(frame(RST_STREAM, 0, 1, struct.pack(">I", ErrorCodes.CANCEL)))  # frees 60,005
        _wait_held(served, 60_005)
        second.unary(5, "/test.Svc/Big", b"59999")  # fits again (120,009)
        second.until(lambda: 5 in second.responses)
        assert second.quiet(0.2)
        assert second.responses[5].reset is None


def test_request_bytes_count_against_the_worker_budget(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(max_worker_buffered_bytes=50_000))
    with RawClient(served.port) as first, RawClient(served.port) as second:
        first.headers(1, "/test.Svc/Digest")
        first.send(frame(DATA, 0, 1, bytes(16_000)) * 3)  # 48,000 held, request not ended
        _wait_held(served, 48_000)
        second.headers(1, "/test.Svc/Digest")
        second.send(frame(DATA, 0, 1, bytes(3_000)))
        refused = second.response(1)
        assert refused.status == Status.RESOURCE_EXHAUSTED
        assert "too many request bytes" in refused.message


def test_handshake_timeout(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(handshake_timeout=0.5))
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        started = time.monotonic()
        sock.sendall(PREFACE[:10])  # half a preface, then nothing
        sock.settimeout(5)
        while sock.recv(65536):
            pass
        elapsed = time.monotonic() - started
    assert 0.3 < elapsed < 3, elapsed  # the clock stamping the connection may run a tick behind
    with RawClient(served.port) as client:  # a complete handshake is not cut
        time.sleep(0.8)
        client.unary(1, "/test.Svc/Echo", b"still open")
        assert client.response(1).messages == [b"still open"]


def test_idle_timeout(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(idle_timeout=0.5))
    with RawClient(served.port) as busy:
        busy.unary(1, "/test.Svc/Sleep", b"idle-busy:1.0")  # a call in flight is not idleness
        assert busy.response(1).messages == [b"slept:idle-busy"]
    with RawClient(served.port) as client:
        client.unary(1, "/test.Svc/Echo", b"x")
        client.response(1)
        started = time.monotonic()
        closing = client.until_closed(5)
        assert 0.3 < time.monotonic() - started < 3  # the sweeper's clock may run a tick (0.125 s) behind
        assert goaway(closing).error_code == ErrorCodes.NO_ERROR


def test_stalled_request_is_reset(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(stall_timeout=0.5))
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/Digest")
        client.send(frame(DATA, 0, 1, grpc_message(bytes(1000))[:500]))  # never finished
        started = time.monotonic()
        response = client.response(1, timeout=5)
        assert 0.3 < time.monotonic() - started < 3
        assert response.reset == ErrorCodes.CANCEL
        assert _held(served) == 0
        client.unary(3, "/test.Svc/Echo", b"next")  # the connection is fine
        assert client.response(3).messages == [b"next"]


def test_stalled_response_is_reset_and_freed(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(stall_timeout=0.5))
    with RawClient(served.port, {SettingCodes.INITIAL_WINDOW_SIZE: 0}) as client:
        client.unary(1, "/test.Svc/Big", b"100000")
        client.until(lambda: 1 in client.responses)
        assert _held(served) == 100_005
        response = client.response(1, timeout=5)
        assert response.reset == ErrorCodes.CANCEL
        assert _held(served) == 0


def test_a_quiet_bidi_stream_is_not_stalled(make_server: Callable[..., Served]) -> None:
    served = make_server(Limits(stall_timeout=0.3))
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/BidiEcho")
        client.send(frame(DATA, 0, 1, grpc_message(b"one")))
        time.sleep(1.0)  # nothing half-sent: waiting between messages is fine
        client.send(frame(DATA, END_STREAM, 1, grpc_message(b"two")))
        assert client.response(1).messages == [b"one", b"two"]


def test_settings_apply_the_last_initial_window_once(served: Served) -> None:
    """500 INITIAL_WINDOW_SIZE entries in one SETTINGS frame: the last one counts."""
    with RawClient(served.port, {SettingCodes.INITIAL_WINDOW_SIZE: 0}) as client:
        client.unary(1, "/test.Svc/Big", b"50000")
        client.until(lambda: 1 in client.responses)
        entries = [(SettingCodes.INITIAL_WINDOW_SIZE, v) for v in range(500)] + [(SettingCodes.INITIAL_WINDOW_SIZE, 7)]
        client.send(frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in entries)))
        client.until(lambda: len(client.responses[1].data) == 7)
        assert client.quiet(0.2)
        assert len(client.responses[1].data) == 7


def test_one_connection_gets_turns_not_the_loop(served: Served, state: State) -> None:
    """1,000 pipelined calls on one connection and one on another, ready together: the other is not served last."""
    with RawClient(served.port) as flood, RawClient(served.port) as other:
        flood.unary(1, "/test.Svc/Echo", b"")
        other.unary(1, "/test.Svc/Echo", b"")
        flood.response(1)
        other.response(1)
        state.calls.clear()
        calls = b"".join(
            flood.headers_frame(s, "/test.Svc/Record") + frame(DATA, END_STREAM, s, grpc_message(b"flood"))
            for s in range(3, 2003, 2)
        )
        hold = threading.Event()
        served.loop.loop.call_soon_threadsafe(hold.wait, 5)  # the server's loop waits while both requests land
        flood.send(calls)
        other.unary(3, "/test.Svc/Record", b"other")
        time.sleep(0.2)
        hold.set()
        other.response(3)
        flood.response(2001)
        order = list(state.calls)
    assert len(order) == 1001
    assert order.index(b"other") <= 200  # a turn is 50 calls: the other connection waits a few turns at most


def test_a_client_that_does_not_read_is_not_read(make_server: Callable[..., Served]) -> None:
    """PINGs whose acks are never read: once the server's writes are paused it stops reading (backpressure)."""
    served = make_server(Limits(control_frames_per_second=10**9))
    chunk = PING_FRAME * 4096
    with RawClient(served.port) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        client.sock.setblocking(False)
        sent, blocked_since, deadline = 0, None, time.monotonic() + 5
        while time.monotonic() < deadline and sent < 64 * MiB:
            try:
                sent += client.sock.send(chunk[sent % len(chunk) :])  # whole frames, even after a partial send
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 0.5:
                    break  # the server has stopped reading
                time.sleep(0.01)
        assert blocked_since is not None and time.monotonic() - blocked_since > 0.5, f"{sent} bytes taken"
        assert sent < 32 * MiB
