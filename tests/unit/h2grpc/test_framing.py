"""HTTP/2 framing: CONTINUATION, padding, PING, SETTINGS, frames to tolerate, malformed input."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from ladle.server.h2grpc import Limits, Status
from ladle.server.h2grpc import messages as h2grpc_messages

from .support import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    MAX_FRAME,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    Frame,
    H2Client,
    RawClient,
    Served,
    Wire,
    frame,
    grpc_message,
    parse_frames,
    payload_of,
    request_headers,
    settings_payload,
)

pytestmark = pytest.mark.timeout(60)


def rewrite_headers(change: Callable[[Frame], bytes]) -> Callable[[bytes], bytes]:
    """A rewrite of h2's output: every HEADERS frame replaced by ``change(frame)``."""

    def rewrite(data: bytes) -> bytes:
        frames, rest = parse_frames(data)
        assert rest == b""
        return b"".join(change(f) if f.type == HEADERS else frame(f.type, f.flags, f.stream, f.payload) for f in frames)

    return rewrite


def split_into_continuations(f: Frame) -> bytes:
    assert f.flags & END_HEADERS and not f.flags & (PADDED | PRIORITY_FLAG)
    block = f.payload
    return (
        frame(HEADERS, f.flags & ~END_HEADERS, f.stream, block[:3])
        + frame(CONTINUATION, 0, f.stream, block[3:7])
        + frame(CONTINUATION, 0, f.stream, b"")
        + frame(CONTINUATION, END_HEADERS, f.stream, block[7:])
    )


def padded(pad: int, *, priority: bool = False) -> Callable[[Frame], bytes]:
    def change(f: Frame) -> bytes:
        prio = struct.pack(">IB", 0, 15) if priority else b""
        flags = f.flags | PADDED | (PRIORITY_FLAG if priority else 0)
        return frame(HEADERS, flags, f.stream, bytes([pad]) + prio + f.payload + b"\0" * pad)

    return change


@pytest.mark.parametrize(
    "rewrite",
    [split_into_continuations, padded(0), padded(200), padded(7, priority=True)],
    ids=["continuation", "padded-0", "padded-200", "padded-priority"],
)
def test_header_frame_variants_are_accepted(served: Served, rewrite: Callable[[Frame], bytes]) -> None:
    with H2Client(served.port) as client:
        extra = [("x-probe", "variant")]
        response = client.call("/test.Svc/Meta", b"", rewrite=rewrite_headers(rewrite), extra=extra)
        assert json.loads(response.messages[0])["x-probe"] == "variant"
        # the HPACK state on both sides still agrees: a normal call on the same connection works
        response = client.call("/test.Svc/Meta", b"", extra=[("x-probe", "again")])
        assert json.loads(response.messages[0])["x-probe"] == "again"


def test_header_block_too_big_for_one_frame(served: Served) -> None:
    value = "v" * 30_000
    sent: list[int] = []

    def record(data: bytes) -> bytes:
        sent.extend(f.type for f in parse_frames(data)[0])
        return data

    with H2Client(served.port) as client:
        response = client.call("/test.Svc/Meta", b"", rewrite=record, extra=[("x-big", value)])
    assert sent.count(CONTINUATION) >= 1
    assert json.loads(response.messages[0])["x-big"] == value


@pytest.mark.parametrize("pad_length", [0, 1, 255])
def test_padded_data_frames_are_accepted(served: Served, pad_length: int) -> None:
    request = payload_of(100_000)  # several padded DATA frames
    with H2Client(served.port) as client:
        response = client.call("/test.Svc/Digest", request, pad_length=pad_length)
    assert json.loads(response.messages[0])["sha256"] == hashlib.sha256(request).hexdigest()


def test_ping_is_acked_with_the_same_payload(served: Served) -> None:
    with H2Client(served.port) as client:
        client.h2.ping(b"\x00\xffping!!")
        client.flush()
        client.send(frame(PING, ACK, 0, b"an ack.."))  # an ACK is not answered
        client.h2.ping(b"12345678")
        client.flush()
        while len([e for e in client.events if isinstance(e, h2.events.PingAckReceived)]) < 2:
            client.receive()
        pings = [f for f in client.frames if f.type == PING]
    assert [(f.flags, f.stream, f.payload) for f in pings] == [(ACK, 0, b"\x00\xffping!!"), (ACK, 0, b"12345678")]


def test_settings_are_acked(served: Served) -> None:
    with H2Client(served.port) as client:
        client.h2.update_settings({SettingCodes.MAX_FRAME_SIZE: 32_768, SettingCodes.INITIAL_WINDOW_SIZE: 100_000})
        client.flush()
        while len([e for e in client.events if isinstance(e, h2.events.SettingsAcknowledged)]) < 2:
            client.receive()
        response = client.call("/test.Svc/Big", b"200000")  # the new settings are in force
        first = client.frames[0]
        assert max(len(f.payload) for f in client.frames if f.type == DATA) <= 32_768
        acks = [f for f in client.frames if f.type == SETTINGS and f.flags & ACK]
    assert first.type == SETTINGS and not first.flags & ACK  # the server's preface
    server_settings = dict(struct.unpack(">HI", first.payload[i : i + 6]) for i in range(0, len(first.payload), 6))
    assert server_settings[SettingCodes.MAX_CONCURRENT_STREAMS] == Limits().max_concurrent_streams
    assert server_settings.get(SettingCodes.MAX_FRAME_SIZE, MAX_FRAME) == MAX_FRAME
    assert [(f.stream, f.payload) for f in acks] == [(0, b""), (0, b"")]
    assert response.messages == [payload_of(200_000)]


def test_frames_the_server_must_tolerate(served: Served) -> None:
    """Unknown frame types, PRIORITY (even on idle streams), frames on closed streams, a PING ACK: all ignored."""
    with RawClient(served.port) as client:
        client.unary(1, "/test.Svc/Echo", b"one")
        assert client.response(1).messages == [b"one"]
        client.send(
            frame(0xFA, 0xFF, 0, b"unknown type on the connection")
            + frame(PRIORITY, 0, 9, struct.pack(">IB", 0, 16))  # an idle stream
            + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100))  # a closed stream
            + frame(RST_STREAM, 0, 1, struct.pack(">I", ErrorCodes.CANCEL))  # a closed stream
            + frame(PING, ACK, 0, bytes(8))
        )
        client.headers(3, "/test.Svc/Echo")
        client.send(frame(0xFB, 0, 3, b"unknown type on the stream") + frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 1)))
        client.send(frame(DATA, END_STREAM, 3, grpc_message(b"two")))
        assert client.response(3).messages == [b"two"]
        assert client.quiet(0.05)
        assert [f.type for f in client.frames if f.stream == 1] == [HEADERS, DATA, HEADERS]
        assert [f.type for f in client.frames if f.type in (GOAWAY, RST_STREAM, PING)] == []


def test_request_trailers_end_the_request(served: Served) -> None:
    with H2Client(served.port) as client:
        sid = client.h2.get_next_available_stream_id()
        client.h2.send_headers(sid, request_headers("/test.Svc/Echo"))
        client.h2.send_data(sid, grpc_message(b"with trailers"))
        client.h2.send_headers(sid, [("x-trailer", "1")], end_stream=True)
        client.flush()
        assert client.wait(sid).messages == [b"with trailers"]


def test_header_block_over_the_peers_frame_size_uses_continuation(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the cut lifted, a 40000-byte grpc-message goes out as HEADERS + CONTINUATION frames."""
    monkeypatch.setattr(h2grpc_messages, "_MAX_MESSAGE_CHARS", 100_000)
    with RawClient(served.port) as client:
        client.unary(1, "/test.Svc/LongError", b"40000")
        client.unary(3, "/test.Svc/Echo", b"next")
        response = client.response(1)
        assert client.response(3).messages == [b"next"]
        frames = client.frames
    assert max(len(f.payload) for f in frames) <= MAX_FRAME
    assert [f.type for f in frames if f.stream == 1] == [HEADERS, CONTINUATION, CONTINUATION]
    assert response.status == Status.ABORTED
    assert response.message == "x" * 40000
    with H2Client(served.port, {SettingCodes.MAX_FRAME_SIZE: 65_536}) as h2_client:  # h2 checks it all too
        response = h2_client.call("/test.Svc/LongError", b"40000")
        assert response.status == Status.ABORTED and response.message == "x" * 40000
        assert [f.type for f in h2_client.frames if f.stream == 1] == [HEADERS]  # fits in one 64 KiB frame


START = PREFACE + frame(SETTINGS, 0, 0)


def headers_frame(encoder: hpack.Encoder, stream_id: int, flags: int = END_HEADERS) -> bytes:
    return frame(HEADERS, flags, stream_id, encoder.encode(request_headers("/test.Svc/Echo")))


MALFORMED: dict[str, tuple[Callable[[hpack.Encoder], bytes], ErrorCodes]] = {
    "http1-request": (lambda e: b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", ErrorCodes.PROTOCOL_ERROR),
    "corrupt-preface": (lambda e: PREFACE[:-4] + b"\r\n\r\r" + frame(SETTINGS, 0, 0), ErrorCodes.PROTOCOL_ERROR),
    "first-frame-not-settings": (lambda e: PREFACE + frame(PING, 0, 0, bytes(8)), ErrorCodes.PROTOCOL_ERROR),
    "frame-over-max-size": (
        lambda e: START + frame(HEADERS, END_HEADERS, 1, bytes(16_385)),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "data-on-stream-0": (lambda e: START + frame(DATA, 0, 0, b"x"), ErrorCodes.PROTOCOL_ERROR),
    "headers-on-even-stream": (lambda e: START + headers_frame(e, 2), ErrorCodes.PROTOCOL_ERROR),
    "headers-on-stream-0": (lambda e: START + headers_frame(e, 0), ErrorCodes.PROTOCOL_ERROR),
    "data-on-idle-stream": (lambda e: START + frame(DATA, 0, 5, b"x"), ErrorCodes.PROTOCOL_ERROR),
    "continuation-without-headers": (
        lambda e: START + frame(CONTINUATION, END_HEADERS, 1, b""),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "frame-inside-header-block": (
        lambda e: START + headers_frame(e, 1, flags=0) + frame(PING, 0, 0, bytes(8)),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "push-promise-from-client": (
        lambda e: START + frame(PUSH_PROMISE, END_HEADERS, 1, bytes(4)),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "bad-hpack": (lambda e: START + frame(HEADERS, END_HEADERS, 1, b"\x80"), ErrorCodes.COMPRESSION_ERROR),
    "continuation-flood": (
        lambda e: (
            START + headers_frame(e, 1, flags=0) + b"".join(frame(CONTINUATION, 0, 1, bytes(16_384)) for _ in range(5))
        ),
        ErrorCodes.ENHANCE_YOUR_CALM,
    ),
    "second-headers-without-end-stream": (
        lambda e: START + headers_frame(e, 1) + headers_frame(e, 1),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "headers-on-closed-stream": (
        lambda e: START + headers_frame(e, 1) + frame(DATA, END_STREAM, 1, grpc_message(b"x")) + headers_frame(e, 1),
        ErrorCodes.STREAM_CLOSED,
    ),
    "data-padding-too-long": (
        lambda e: START + headers_frame(e, 1) + frame(DATA, PADDED, 1, b"\x05abc"),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "headers-padding-too-long": (
        lambda e: START + frame(HEADERS, END_HEADERS | PADDED, 1, b"\x09" + e.encode(request_headers("/x"))[:4]),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "settings-partial-entry": (lambda e: START + frame(SETTINGS, 0, 0, bytes(7)), ErrorCodes.FRAME_SIZE_ERROR),
    "settings-on-a-stream": (lambda e: START + frame(SETTINGS, 0, 1), ErrorCodes.PROTOCOL_ERROR),
    "initial-window-too-big": (
        lambda e: PREFACE + frame(SETTINGS, 0, 0, settings_payload({SettingCodes.INITIAL_WINDOW_SIZE: 2**31})),
        ErrorCodes.FLOW_CONTROL_ERROR,
    ),
    "max-frame-size-too-small": (
        lambda e: PREFACE + frame(SETTINGS, 0, 0, settings_payload({SettingCodes.MAX_FRAME_SIZE: 16_383})),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "enable-push-2": (
        lambda e: PREFACE + frame(SETTINGS, 0, 0, settings_payload({SettingCodes.ENABLE_PUSH: 2})),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "window-update-0": (lambda e: START + frame(WINDOW_UPDATE, 0, 0, bytes(4)), ErrorCodes.PROTOCOL_ERROR),
    "window-over-2^31-1": (
        lambda e: START + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 65_535)),
        ErrorCodes.FLOW_CONTROL_ERROR,
    ),
    "window-update-3-bytes": (lambda e: START + frame(WINDOW_UPDATE, 0, 0, bytes(3)), ErrorCodes.FRAME_SIZE_ERROR),
    "ping-on-a-stream": (lambda e: START + frame(PING, 0, 1, bytes(8)), ErrorCodes.PROTOCOL_ERROR),
    "rst-on-stream-0": (lambda e: START + frame(RST_STREAM, 0, 0, bytes(4)), ErrorCodes.PROTOCOL_ERROR),
    "rst-on-idle-stream": (lambda e: START + frame(RST_STREAM, 0, 7, bytes(4)), ErrorCodes.PROTOCOL_ERROR),
    "ping-7-bytes": (lambda e: START + frame(PING, 0, 0, bytes(7)), ErrorCodes.FRAME_SIZE_ERROR),
    "rst-3-bytes": (
        lambda e: START + headers_frame(e, 1) + frame(RST_STREAM, 0, 1, bytes(3)),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "settings-ack-with-payload": (
        lambda e: START + frame(SETTINGS, ACK, 0, settings_payload({SettingCodes.ENABLE_PUSH: 0})),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_gets_goaway_and_close(served: Served, case: str) -> None:
    build, code = MALFORMED[case]
    with Wire(served.port) as wire:
        wire.send(build(hpack.Encoder()))
        frames = wire.until_closed(timeout=1.0)
    goaways = [f for f in frames if f.type == GOAWAY]
    assert len(goaways) == 1 and frames[-1] is goaways[0], [f.type for f in frames]
    assert goaways[0].stream == 0
    assert ErrorCodes(goaways[0].error_code) == code
    with H2Client(served.port) as client:  # the server still takes new connections
        assert client.call("/test.Svc/Echo", b"next").messages == [b"next"]
