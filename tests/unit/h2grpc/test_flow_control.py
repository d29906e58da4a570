"""Flow control both ways: big messages, windows, WINDOW_UPDATE, handlers that stop reading."""

from __future__ import annotations

import hashlib
import json
import random
import struct
import time

import grpc
import pytest
from h2.settings import SettingCodes

from ladle.server.h2grpc import Status

from .support import (
    ACK,
    DATA,
    END_STREAM,
    HEADERS,
    MAX_FRAME,
    SETTINGS,
    WINDOW_UPDATE,
    Frame,
    H2Client,
    MiB,
    RawClient,
    Response,
    Served,
    State,
    frame,
    grpc_message,
    payload_of,
    request_headers,
    settings_payload,
    unary,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("size", [64 * 1024 + 1, MiB])
def test_big_response_arrives_intact(channel: grpc.Channel, size: int) -> None:
    assert unary(channel, "Big")(str(size).encode(), timeout=10) == payload_of(size)


def test_big_response_respects_a_small_peer_window(served: Served) -> None:
    size = MiB
    body = grpc_message(payload_of(size))
    stream_window, conn_window = 1000, 65_535  # what we advertise; the connection window starts at 65535
    with H2Client(served.port, {SettingCodes.INITIAL_WINDOW_SIZE: 1000}, auto_window=False) as client:
        sid = client.start("/test.Svc/Big", grpc_message(str(size).encode()))
        rng = random.Random(1)
        received = bytearray()
        seen: list[Frame] = []
        quiet_checks = 0
        while not client.responses.get(sid, Response()).ended:
            if len(received) < len(body) and (stream_window == 0 or conn_window == 0):
                if quiet_checks < 3:  # a few times: nothing arrives while a window is empty
                    assert client.quiet(0.05)
                    quiet_checks += 1
                grant = rng.choice([1, 100, 999, 16_383, 16_384, 16_385, 40_000, 100_000])
                if stream_window == 0 or rng.random() < 0.5:
                    client.h2.increment_flow_control_window(grant, sid)
                    stream_window += grant
                if conn_window == 0 or rng.random() < 0.5:
                    client.h2.increment_flow_control_window(grant, None)
                    conn_window += grant
                client.flush()
                continue
            for f in client.receive():
                if f.stream != sid:
                    continue
                seen.append(f)
                if f.type == DATA:
                    size_now = len(f.payload)
                    assert 0 < size_now <= MAX_FRAME
                    assert size_now <= stream_window and size_now <= conn_window, "DATA beyond the window"
                    stream_window -= size_now
                    conn_window -= size_now
                    received += f.payload
        assert received == body
        assert quiet_checks == 3
        kinds = [(f.type, f.flags & END_STREAM) for f in seen]
        assert kinds[0] == (HEADERS, 0)  # response headers first
        assert kinds[-1] == (HEADERS, END_STREAM)  # trailers last
        assert all(k == (DATA, 0) for k in kinds[1:-1])
        assert client.responses[sid].status == 0


def test_initial_window_change_applies_to_open_streams(served: Served) -> None:
    """RFC 9113 6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE moves every open stream's window, even below zero."""
    body = grpc_message(payload_of(100_000))
    with RawClient(served.port, {SettingCodes.INITIAL_WINDOW_SIZE: 1000}) as client:
        client.unary(1, "/test.Svc/Big", b"100000")

        def received_until(n: int) -> bytes:
            while len(client.responses.get(1, Response()).data) < n:
                client.receive()
            assert client.quiet(0.05)  # and not a byte more
            return bytes(client.responses[1].data)

        def settings_acks() -> int:
            return len([f for f in client.frames if f.type == SETTINGS and f.flags & ACK])

        assert received_until(1000) == body[:1000]
        client.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1_000_000)))  # the connection is not the limit
        assert client.quiet(0.05)  # the stream window still is
        client.send(frame(SETTINGS, 0, 0, settings_payload({SettingCodes.INITIAL_WINDOW_SIZE: 500})))  # -> -500
        while settings_acks() < 1:
            client.receive()
        client.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 600)))  # -500 + 600: 100 bytes may go
        assert received_until(1100) == body[:1100]
        client.send(frame(SETTINGS, 0, 0, settings_payload({SettingCodes.INITIAL_WINDOW_SIZE: 200_000})))
        response = client.response(1)
    assert response.data == body
    assert response.status == Status.OK


def test_streaming_handler_waits_for_the_peers_window(served: Served, state: State) -> None:
    """A peer that reads nothing must not make the server buffer the whole stream; once it reads, all arrives."""
    probes = [state.probe("flood-1"), state.probe("flood-3")]
    with RawClient(served.port, {SettingCodes.INITIAL_WINDOW_SIZE: 1000}) as client:
        client.unary(1, "/test.Svc/Flood", b"flood-1")
        client.unary(3, "/test.Svc/Flood", b"flood-3")
        while {f.stream for f in client.frames if f.type == DATA} != {1, 3}:
            client.receive()
        assert client.quiet(0.2)
        # a 1000-byte window holds less than one 1029-byte message: the handlers wait at their first yield
        assert [p.produced for p in probes] == [1, 1]
        assert not any(p.finished.is_set() for p in probes)
        client.send(
            frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 8 * MiB))
            + frame(SETTINGS, 0, 0, settings_payload({SettingCodes.INITIAL_WINDOW_SIZE: 4 * MiB}))
        )
        responses = [client.response(1), client.response(3)]
    assert [r.status for r in responses] == [Status.OK, Status.OK]
    assert [r.messages for r in responses] == [[bytes(1024)] * 1000] * 2
    assert all(p.finished.is_set() and p.produced == 1000 for p in probes)


@pytest.mark.parametrize("size", [3 * MiB, 4 * MiB])  # 4 MiB: exactly Limits.max_message_bytes
def test_big_request_arrives_intact(channel: grpc.Channel, size: int) -> None:
    request = payload_of(size)
    answer = json.loads(unary(channel, "Digest")(request, timeout=10))
    assert answer == {"len": size, "sha256": hashlib.sha256(request).hexdigest(), "encoding": "identity"}


def test_requests_past_the_connection_window_get_window_updates(served: Served) -> None:
    """18 MiB on one connection: more than the server's 16 MiB window, so it must give window back."""
    requests = [payload_of(3 * MiB - i) for i in range(6)]
    with H2Client(served.port) as client:
        answers = [json.loads(client.call("/test.Svc/Digest", r).messages[0]) for r in requests]
        granted = sum(
            int.from_bytes(f.payload, "big") & 0x7FFFFFFF
            for f in client.frames
            if f.type == WINDOW_UPDATE and not f.stream
        )
    assert [a["sha256"] for a in answers] == [hashlib.sha256(r).hexdigest() for r in requests]
    assert 65_535 + granted >= sum(len(r) + 5 for r in requests)


def test_bidi_stream_past_the_stream_window(channel: grpc.Channel) -> None:
    """20 MiB on one stream: more than the stream's 16 MiB window."""
    requests = [payload_of(MiB + i) for i in range(20)]
    call = channel.stream_stream("/test.Svc/BidiDigest", request_serializer=None, response_deserializer=None)
    assert list(call(iter(requests), timeout=20)) == [hashlib.sha256(r).digest() for r in requests]


def test_bidi_handler_that_does_not_read_stops_the_sender(served: Served, state: State) -> None:
    """Streamed requests are credited as the handler takes them: the peer stops at the 16 MiB stream window."""
    with H2Client(served.port) as client:
        sid = client.h2.get_next_available_stream_id()
        client.h2.send_headers(sid, request_headers("/test.Svc/BidiNeverReads"))
        client.flush()
        chunk = grpc_message(bytes(MiB - 5))
        sent = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            room = min(client.h2.local_flow_control_window(sid), client.h2.max_outbound_frame_size)
            if room <= 0:
                try:
                    client.receive(0.3)  # any WINDOW_UPDATE would reopen the window
                except TimeoutError:
                    break
                continue
            data = chunk[sent % len(chunk) :][:room]
            client.h2.send_data(sid, data)
            client.flush()
            sent += len(data)
        assert state.probe("never-reads").started.is_set()
        assert 16 * MiB - MiB <= sent <= 16 * MiB, f"{sent / MiB:.1f} MiB accepted by a handler that reads nothing"
