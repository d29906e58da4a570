"""A small, fast gRPC server: HTTP/2 framing on an asyncio protocol, HPACK from the ``hpack`` package.

Why not grpcio's server: on the 2-core benchmark machine grpcio's Python server costs 0.13-0.23 ms
of CPU per call before a handler runs, and a server on the ``h2`` state machine about 0.15 ms; this
module costs 12-19 µs (``bench/grpc_frontends.py`` measures all three with a constant handler). It
implements the part of HTTP/2 (RFC 9113) that gRPC over cleartext HTTP/2 uses, and no more:

* prior-knowledge h2c (the client preface, SETTINGS both ways, PING, GOAWAY, RST_STREAM,
  WINDOW_UPDATE, CONTINUATION, padding and priority fields, unknown frames ignored);
* flow control both ways: receive windows are large and refilled as data arrives; responses
  respect the peer's stream and connection windows and its SETTINGS_MAX_FRAME_SIZE, and wait
  for WINDOW_UPDATE when a window is empty;
* the gRPC protocol (``PROTOCOL-HTTP2.md``): length-prefixed messages, ``grpc-status`` and
  percent-encoded ``grpc-message`` in trailers (or Trailers-Only when nothing was sent),
  ``grpc-timeout`` deadlines, gzip/deflate request compression, 415 for a non-gRPC content type;
* unary, server-streaming and bidirectional-streaming methods; a unary handler may answer
  synchronously (no task is created: the hot path) or return an awaitable;
* limits: concurrent streams per connection, header list size, message size; a peer that
  breaks the protocol gets GOAWAY and is disconnected, never a crashed worker;
* graceful stop: no new connections, GOAWAY to every peer, in-flight calls finish within the
  grace period.

Not implemented (nothing in gRPC over h2c needs them): TLS/ALPN (terminate TLS in front),
server push, HTTP/1.1 upgrade, response compression.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any, cast

import hpack
from hpack import NeverIndexedHeaderTuple

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME = struct.Struct(">BHBBI")  # length (24 bits as 8 + 16), type, flags, stream id
_U32 = struct.Struct(">I")
_U16U32 = struct.Struct(">HI")
_MESSAGE = struct.Struct(">BI")  # gRPC message prefix: compressed flag, length

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

_SETTING_HEADER_TABLE_SIZE = 1
_SETTING_ENABLE_PUSH = 2
_SETTING_MAX_CONCURRENT_STREAMS = 3
_SETTING_INITIAL_WINDOW_SIZE = 4
_SETTING_MAX_FRAME_SIZE = 5
_SETTING_MAX_HEADER_LIST_SIZE = 6

_DEFAULT_WINDOW = 65_535
_MAX_WINDOW = 2**31 - 1
_RECV_WINDOW = 1 << 24  # what we let a peer send before it must wait for us (connection and stream)


class H2Error(IntEnum):
    """HTTP/2 error codes (RFC 9113 section 7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    ENHANCE_YOUR_CALM = 0xB


class Status(IntEnum):
    """gRPC status codes."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GrpcError(Exception):
    """Raise from a handler to end the call with ``status`` and ``message``."""

    def __init__(self, status: Status, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ConnectionError(Exception):
    """The peer broke the protocol: send GOAWAY with ``code`` and close."""

    def __init__(self, code: H2Error, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class CallContext:
    """What a handler may want to know about its call."""

    method: str
    metadata: Mapping[str, str]
    peer: str
    deadline: float | None  # time.monotonic() value, or None


UnaryHandler = Callable[[bytes, CallContext], bytes | Awaitable[bytes]]
ServerStreamHandler = Callable[[bytes, CallContext], AsyncIterator[bytes]]
BidiHandler = Callable[[AsyncIterator[bytes], CallContext], AsyncIterator[bytes]]


@dataclass(frozen=True)
class Method:
    """One RPC: ``kind`` is ``unary``, ``server_stream`` or ``bidi``."""

    kind: str
    handler: Any

    @classmethod
    def unary(cls, handler: UnaryHandler) -> Method:
        """A unary method; the handler returns the response bytes or an awaitable of them."""
        return cls("unary", handler)

    @classmethod
    def server_stream(cls, handler: ServerStreamHandler) -> Method:
        """One request, a stream of responses (an async generator of bytes)."""
        return cls("server_stream", handler)

    @classmethod
    def bidi(cls, handler: BidiHandler) -> Method:
        """A stream of requests (an async iterator of bytes), a stream of responses."""
        return cls("bidi", handler)


@dataclass(frozen=True)
class Limits:
    """Per-connection limits."""

    max_message_bytes: int = 4 << 20
    max_buffered_bytes: int = 64 << 20  # request bytes held (not yet taken by handlers) per connection
    max_concurrent_streams: int = 1000
    max_header_list_bytes: int = 64 << 10
    max_frame_size: int = 1 << 14  # what we accept (the RFC default; gRPC clients keep to it)


def _frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FRAME.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


_PERCENT_SAFE = re.compile(rb"[^\x20-\x24\x26-\x7e]")


_MAX_MESSAGE_CHARS = 2000  # clients refuse trailers over their metadata limit (grpcio: 8-16 KiB)


def encode_grpc_message(message: str) -> bytes:
    """``grpc-message``: UTF-8, bytes outside printable ASCII (and ``%``) percent-encoded; long ones cut."""
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + " ... (truncated)"
    return _PERCENT_SAFE.sub(lambda m: b"%%%02X" % m.group()[0], message.encode())


def parse_timeout(value: str) -> float | None:
    """``grpc-timeout`` (``<digits><unit>``, unit one of H M S m u n) in seconds; None if malformed."""
    units = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    if len(value) < 2 or value[-1] not in units or not value[:-1].isdigit() or len(value) > 9:
        return None
    return int(value[:-1]) * units[value[-1]]


class _HeaderBlocks:
    """Response header blocks, encoded without touching the HPACK dynamic table (so shareable)."""

    def __init__(self) -> None:
        self._encoder = hpack.Encoder()
        self.ok_headers = self.encode([(":status", "200"), ("content-type", "application/grpc")])
        self.ok_trailers = self.encode([("grpc-status", "0")])
        self._status: dict[tuple[int, int, bytes], bytes] = {}

    def encode(self, headers: list[tuple[str, str | bytes]]) -> bytes:
        block = self._encoder.encode([NeverIndexedHeaderTuple(n, v) for n, v in headers], huffman=False)
        assert not self._encoder.header_table.dynamic_entries, "response headers must not be indexed"
        return bytes(block)

    def status(self, status: int, message: str, *, trailers_only: bool, http_status: int = 200) -> bytes:
        """Trailers carrying ``status`` (a Trailers-Only block when nothing was sent before)."""
        encoded = encode_grpc_message(message)
        key = (status, http_status if trailers_only else 0, encoded)
        block = self._status.get(key)
        if block is None:
            headers: list[tuple[str, str | bytes]] = []
            if trailers_only:
                headers += [(":status", str(http_status)), ("content-type", "application/grpc")]
            headers.append(("grpc-status", str(status)))
            if encoded:
                headers.append(("grpc-message", encoded))
            block = self.encode(headers)
            if len(self._status) < 1024:
                self._status[key] = block
        return block


_INDEXED_BYTES = bytes(range(0x80, 0xFF))  # deleting these leaves nothing iff a block is only 1-byte indexes


def _skip_int(block: bytes, pos: int, prefix_mask: int) -> tuple[int, int]:
    """(value, position after) of the HPACK integer at ``pos`` with a prefix of ``prefix_mask`` bits."""
    value = block[pos] & prefix_mask
    pos += 1
    if value == prefix_mask:
        shift = 0
        while True:
            byte = block[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    return value, pos


def _table_neutral(block: bytes) -> bool:
    """Whether decoding ``block`` leaves the HPACK dynamic table as it is.

    True when the block holds only indexed fields (``1xxxxxxx``) and literals without indexing
    or never indexed (``0000xxxx``, ``0001xxxx``); False for literals with incremental indexing,
    table size updates, or anything malformed (the decoder then reports it).
    """
    pos, end = 0, len(block)
    try:
        while pos < end:
            first = block[pos]
            if first & 0x80:
                _, pos = _skip_int(block, pos, 0x7F)
            elif first & 0xE0 == 0:
                name_index, pos = _skip_int(block, pos, 0x0F)
                if name_index == 0:
                    length, pos = _skip_int(block, pos, 0x7F)
                    pos += length
                length, pos = _skip_int(block, pos, 0x7F)
                pos += length
            else:
                return False
    except IndexError:
        return False
    return pos == end


class _Head:
    """What a request's headers say: the method (or why there is no call), encoding, timeout, metadata."""

    __slots__ = ("encoding", "error", "metadata", "method", "name", "timeout", "view")

    def __init__(self) -> None:
        self.name = ""
        self.method: Method | None = None
        self.error: tuple[Status, str, int] | None = None  # status, message, HTTP status
        self.encoding = "identity"
        self.timeout: float | None = None
        self.metadata: dict[str, str] = {}
        self.view: Mapping[str, str] = MappingProxyType(self.metadata)  # what handlers get: read-only

    @classmethod
    def parse(cls, headers: list[tuple[bytes, bytes]], methods: Mapping[str, Method]) -> _Head:
        """Check the request headers and find the method."""
        head = cls()
        verb = path = content_type = b""
        for name, value in headers:
            if name[:1] == b":":
                if name == b":path":
                    path = value
                elif name == b":method":
                    verb = value
            elif name == b"content-type":
                content_type = value
            else:
                head.metadata[name.decode("latin-1")] = value.decode("latin-1")
        head.name = path.decode("latin-1")
        head.encoding = head.metadata.get("grpc-encoding", "identity")
        timeout = head.metadata.get("grpc-timeout")
        if verb != b"POST":
            head.error = (Status.UNIMPLEMENTED, "gRPC requires POST", 405)
        elif not content_type.startswith(b"application/grpc"):
            head.error = (Status.UNKNOWN, f"unsupported content-type {content_type.decode('latin-1')!r}", 415)
        elif (found := methods.get(head.name)) is None:
            head.error = (Status.UNIMPLEMENTED, f"unknown method {head.name}", 200)
        elif head.encoding not in ("identity", "gzip", "deflate"):
            head.error = (Status.UNIMPLEMENTED, f"grpc-encoding {head.encoding!r} is not supported", 200)
        elif timeout is not None and (seconds := parse_timeout(timeout)) is None:
            head.error = (Status.INTERNAL, f"malformed grpc-timeout {timeout!r}", 200)
        else:
            head.method = found
            head.timeout = seconds if timeout is not None else None
        return head


class _Stream:
    """One call: request bytes in, response frames out."""

    __slots__ = (
        "body", "context", "deadline", "done", "encoding", "ended", "headers_sent", "held", "id", "inbox",
        "method", "pending", "pending_end", "recv_credit", "send_window", "task",
    )  # fmt: skip

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.body = bytearray()
        self.ended = False  # the peer sent END_STREAM
        self.done = False  # we sent END_STREAM (or reset the stream)
        self.headers_sent = False
        self.send_window = send_window
        self.recv_credit = 0
        self.held = 0  # request bytes in body or inbox, counted in the connection's buffered bytes
        self.pending = bytearray()  # DATA payload waiting for flow-control window
        self.pending_end: bytes | None = None  # trailer block to send once pending is out
        self.method: Method | None = None
        self.context: CallContext | None = None
        self.deadline: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.inbox: asyncio.Queue[tuple[bytes, int] | None] | None = None  # bidi: (message, wire size)
        self.encoding = ""


def _split_messages(stream: _Stream, limit: int) -> list[tuple[bytes, int]]:
    """Complete gRPC messages at the front of ``stream.body`` (removed from it), with their wire sizes."""
    body = stream.body
    out: list[tuple[bytes, int]] = []
    pos = 0
    while len(body) - pos >= 5:
        flag, length = _MESSAGE.unpack_from(body, pos)
        if length > limit:
            too_big = f"request message of {length} bytes is over the {limit}-byte limit"
            raise GrpcError(Status.RESOURCE_EXHAUSTED, too_big)
        if len(body) - pos - 5 < length:
            break
        message = bytes(body[pos + 5 : pos + 5 + length])
        pos += 5 + length
        if flag & 1:
            message = _decompress(message, stream.encoding, limit)
        elif flag:
            raise GrpcError(Status.INTERNAL, f"invalid message flags {flag:#x}")
        out.append((message, 5 + length))
    if pos:
        del body[:pos]
    return out


def _decompress(message: bytes, encoding: str, limit: int) -> bytes:
    if encoding not in ("gzip", "deflate"):
        raise GrpcError(Status.INTERNAL, "compressed message without a supported grpc-encoding")
    decoder = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = decoder.decompress(message, limit + 1)
    except zlib.error as exc:
        raise GrpcError(Status.INTERNAL, f"cannot decompress the request ({encoding}): {exc}") from None
    if len(out) > limit:
        raise GrpcError(Status.RESOURCE_EXHAUSTED, f"decompressed request is over the {limit}-byte limit")
    return out


class _Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: H2GrpcServer) -> None:
        self.server = server
        self.limits = server.limits
        self.blocks = server.blocks
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.buf = b""
        self.preface_seen = False
        self.settings_seen = False
        self.decoder = hpack.Decoder(max_header_list_size=self.limits.max_header_list_bytes)
        self.decoder.max_allowed_table_size = 4096
        self.heads: dict[bytes, _Head] = {}
        self.streams: dict[int, _Stream] = {}
        self.last_stream_id = 0
        self.peer_initial_window = _DEFAULT_WINDOW
        self.peer_max_frame = 1 << 14
        self.send_window = _DEFAULT_WINDOW
        self.recv_credit = 0  # connection-level bytes received since our last WINDOW_UPDATE
        self.buffered = 0  # request bytes held for handlers, over all streams (Limits.max_buffered_bytes)
        self.continuation: tuple[int, int, bytearray] | None = None  # (stream id, flags, block so far)
        self.going_away = False
        self.closed = False
        self.blocked: dict[int, _Stream] = {}  # streams with DATA waiting for window
        self.write_ready = asyncio.Event()
        self.write_ready.set()
        self.window_opened = asyncio.Event()  # set whenever blocked DATA may have moved
        self.out: list[bytes] = []  # frames produced while parsing one read, written together

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send our SETTINGS and open the connection receive window."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        self.peer = f"ipv4:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.server.connections.add(self)
        settings = b"".join(
            _U16U32.pack(k, v)
            for k, v in (
                (_SETTING_ENABLE_PUSH, 0),
                (_SETTING_MAX_CONCURRENT_STREAMS, self.limits.max_concurrent_streams),
                (_SETTING_INITIAL_WINDOW_SIZE, _RECV_WINDOW),
                (_SETTING_MAX_FRAME_SIZE, self.limits.max_frame_size),
                (_SETTING_MAX_HEADER_LIST_SIZE, self.limits.max_header_list_bytes),
            )
        )
        self.transport.write(
            _frame(SETTINGS, 0, 0, settings) + _frame(WINDOW_UPDATE, 0, 0, _U32.pack(_RECV_WINDOW - _DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel every call still running."""
        self.closed = True
        self.server.connections.discard(self)
        for stream in self.streams.values():
            stream.done = True
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
        if self.streams:
            self.server.stream_finished(len(self.streams))
        self.streams.clear()
        self.blocked.clear()
        self.write_ready.set()
        self.window_opened.set()

    def pause_writing(self) -> None:
        """The transport's buffer is full: streaming handlers wait."""
        self.write_ready.clear()

    def resume_writing(self) -> None:
        """The transport drained."""
        self.write_ready.set()

    def data_received(self, data: bytes) -> None:
        """Parse every complete frame; write what they produced in one go."""
        buf = self.buf + data if self.buf else data
        try:
            if not self.preface_seen:
                if len(buf) < len(PREFACE):
                    if not PREFACE.startswith(buf):
                        raise _ConnectionError(H2Error.PROTOCOL_ERROR, "not an HTTP/2 client preface")
                    self.buf = buf
                    return
                if not buf.startswith(PREFACE):
                    raise _ConnectionError(H2Error.PROTOCOL_ERROR, "not an HTTP/2 client preface")
                buf = buf[len(PREFACE) :]
                self.preface_seen = True
            pos = self._frames(buf)
            self.buf = buf[pos:]
            if len(self.buf) > self.limits.max_frame_size + 9:
                raise _ConnectionError(H2Error.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
        except _ConnectionError as exc:
            self._fail(exc.code, str(exc))
        self._flush()

    def eof_received(self) -> bool:
        """The peer half-closed: close once our pending writes are out."""
        return False

    # -- frames ----------------------------------------------------------------------------------

    def _frames(self, buf: bytes) -> int:
        pos = 0
        end = len(buf)
        limit = self.limits.max_frame_size
        while end - pos >= 9:
            high, low, ftype, flags, stream_id = _FRAME.unpack_from(buf, pos)
            length = (high << 16) | low
            if length > limit:
                raise _ConnectionError(H2Error.FRAME_SIZE_ERROR, f"a {length}-byte frame is over {limit}")
            if end - pos - 9 < length:
                break
            payload = buf[pos + 9 : pos + 9 + length]
            pos += 9 + length
            stream_id &= 0x7FFFFFFF
            if self.continuation is not None and ftype != CONTINUATION:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, "expected CONTINUATION")
            if not self.settings_seen:
                if ftype != SETTINGS or flags & ACK:
                    raise _ConnectionError(H2Error.PROTOCOL_ERROR, "the first frame must be SETTINGS")
                self.settings_seen = True
            if ftype == DATA:
                self._on_data(stream_id, flags, payload)
            elif ftype == HEADERS:
                self._on_headers(stream_id, flags, payload)
            elif ftype == CONTINUATION:
                self._on_continuation(stream_id, flags, payload)
            elif ftype == SETTINGS:
                self._on_settings(stream_id, flags, payload)
            elif ftype == WINDOW_UPDATE:
                self._on_window_update(stream_id, payload)
            elif ftype == PING:
                if stream_id:
                    raise _ConnectionError(H2Error.PROTOCOL_ERROR, "PING on a stream")
                if length != 8:
                    raise _ConnectionError(H2Error.FRAME_SIZE_ERROR, "PING must be 8 bytes")
                if not flags & ACK:
                    self.out.append(_frame(PING, ACK, 0, payload))
            elif ftype == RST_STREAM:
                if not stream_id:
                    raise _ConnectionError(H2Error.PROTOCOL_ERROR, "RST_STREAM on stream 0")
                if length != 4:
                    raise _ConnectionError(H2Error.FRAME_SIZE_ERROR, "RST_STREAM must be 4 bytes")
                self._on_reset(stream_id)
            elif ftype == GOAWAY:
                self.going_away = True
                self._close_if_idle()
            elif ftype == PRIORITY:
                if not stream_id or length != 5:
                    raise _ConnectionError(H2Error.PROTOCOL_ERROR, "malformed PRIORITY")
            elif ftype == PUSH_PROMISE:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, "clients cannot push")
            # other frame types are ignored (RFC 9113 section 4.1)
        return pos

    def _on_settings(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id:
            raise _ConnectionError(H2Error.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise _ConnectionError(H2Error.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise _ConnectionError(H2Error.FRAME_SIZE_ERROR, "malformed SETTINGS")
        for offset in range(0, len(payload), 6):
            key, value = _U16U32.unpack_from(payload, offset)
            if key == _SETTING_INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise _ConnectionError(H2Error.FLOW_CONTROL_ERROR, "initial window over 2^31-1")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == _SETTING_MAX_FRAME_SIZE:
                if not (1 << 14) <= value <= (1 << 24) - 1:
                    raise _ConnectionError(H2Error.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.peer_max_frame = value
            elif key == _SETTING_HEADER_TABLE_SIZE:
                pass  # our responses never use the dynamic table
            elif key == _SETTING_ENABLE_PUSH and value > 1:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
        self.out.append(_frame(SETTINGS, ACK, 0))
        self._drain_blocked()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(H2Error.FRAME_SIZE_ERROR, "malformed WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > _MAX_WINDOW:
                raise _ConnectionError(H2Error.FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                return  # a closed stream: allowed
            if not increment:
                self._reset(stream, H2Error.PROTOCOL_ERROR)
                return
            stream.send_window += increment
            if stream.send_window > _MAX_WINDOW:
                self._reset(stream, H2Error.FLOW_CONTROL_ERROR)
                return
        self._drain_blocked()

    def _on_headers(self, stream_id: int, flags: int, payload: bytes) -> None:
        if not stream_id or not stream_id & 1:
            raise _ConnectionError(H2Error.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        start = 0
        end = len(payload)
        if flags & PADDED:
            if not payload:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, "padded frame without a pad length")
            start = 1
            end -= payload[0]
        if flags & PRIORITY_FLAG:
            start += 5
        if end < start:
            raise _ConnectionError(H2Error.PROTOCOL_ERROR, "padding longer than the frame")
        block = payload[start:end]
        if not flags & END_HEADERS:
            self.continuation = (stream_id, flags, bytearray(block))
            return
        self._header_block(stream_id, flags, block)

    def _on_continuation(self, stream_id: int, flags: int, payload: bytes) -> None:
        if self.continuation is None or self.continuation[0] != stream_id:
            raise _ConnectionError(H2Error.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        _, first_flags, block = self.continuation
        block += payload
        if len(block) > self.limits.max_header_list_bytes:
            raise _ConnectionError(H2Error.ENHANCE_YOUR_CALM, "header block over the limit")
        if flags & END_HEADERS:
            self.continuation = None
            self._header_block(stream_id, first_flags, bytes(block))

    def _decode_head(self, block: bytes) -> _Head:
        """The request head a header block describes, cached for blocks that leave the HPACK table alone.

        A block of only indexed fields and literals without indexing (see :func:`_table_neutral`)
        does not change the decoder's dynamic table, so while the table stays the same the same
        bytes mean the same headers. Any other block may change the table, so it empties the
        cache. A client's headers are the same on every call (nghttp2, for one, sends ``:path``
        and ``content-length`` as literals without indexing), so after the first call a head
        costs one dict lookup instead of a decode.
        """
        cacheable = not block.translate(None, _INDEXED_BYTES) or _table_neutral(block)
        if cacheable:
            head = self.heads.get(block)
            if head is not None:
                return head
        try:
            headers = cast(list[tuple[bytes, bytes]], self.decoder.decode(block, raw=True))
        except hpack.OversizedHeaderListError:
            raise _ConnectionError(H2Error.ENHANCE_YOUR_CALM, "header list over the limit") from None
        except hpack.HPACKError as exc:
            raise _ConnectionError(H2Error.COMPRESSION_ERROR, f"bad header block: {exc}") from None
        head = _Head.parse(headers, self.server.methods)
        if cacheable:
            if len(self.heads) >= 64:
                self.heads.clear()
            self.heads[block] = head
        else:
            self.heads.clear()
        return head

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        head = self._decode_head(block)
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers from the client: only END_STREAM matters
            if not flags & END_STREAM:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, "second HEADERS without END_STREAM")
            self._end_of_request(stream)
            return
        if stream_id <= self.last_stream_id:
            raise _ConnectionError(H2Error.STREAM_CLOSED, f"HEADERS on closed stream {stream_id}")
        self.last_stream_id = stream_id
        stream = _Stream(stream_id, self.peer_initial_window)
        if self.going_away or self.server.stopping or len(self.streams) >= self.limits.max_concurrent_streams:
            self.out.append(_frame(RST_STREAM, 0, stream_id, _U32.pack(H2Error.REFUSED_STREAM)))
            return
        self.streams[stream_id] = stream
        self.server.stream_started()
        stream.ended = bool(flags & END_STREAM)
        self._start_call(stream, head)
        if flags & END_STREAM and not stream.done:
            self._end_of_request(stream)

    def _start_call(self, stream: _Stream, head: _Head) -> None:
        """Start the call ``head`` describes, or end it at once if the head is not a valid call."""
        if head.error is not None:
            status, message, http_status = head.error
            self._trailers_only(stream, status, message, http_status=http_status)
            return
        stream.encoding = head.encoding
        if head.timeout is not None:
            stream.deadline = time.monotonic() + head.timeout
        method = head.method
        assert method is not None
        stream.method = method
        stream.context = CallContext(head.name, head.view, self.peer, stream.deadline)
        if method.kind == "bidi":
            stream.inbox = asyncio.Queue()
            stream.task = asyncio.get_running_loop().create_task(self._run_bidi(stream))

    def _on_data(self, stream_id: int, flags: int, payload: bytes) -> None:
        length = len(payload)
        self.recv_credit += length
        if self.recv_credit >= _RECV_WINDOW // 2:
            self.out.append(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.recv_credit)))
            self.recv_credit = 0
        if not stream_id:
            raise _ConnectionError(H2Error.PROTOCOL_ERROR, "DATA on stream 0")
        stream = self.streams.get(stream_id)
        if stream is None or stream.ended:
            if stream_id > self.last_stream_id:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            return  # a stream we already answered (or reset): drop, as RFC 9113 allows
        if flags & PADDED:
            if not payload or payload[0] >= length:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, "bad padding")
            payload = payload[1 : length - payload[0]]
        if not stream.done:
            size = len(payload)
            if len(stream.body) + size > self.limits.max_message_bytes + 5 and stream.method is not None:
                self._finish(stream, Status.RESOURCE_EXHAUSTED,
                             f"request over the {self.limits.max_message_bytes}-byte message limit")  # fmt: skip
            elif self.buffered + size > self.limits.max_buffered_bytes:
                limit = self.limits.max_buffered_bytes
                message = f"over {limit} bytes of requests wait on this connection"
                self._finish(stream, Status.RESOURCE_EXHAUSTED, message)
            else:
                stream.body += payload
                stream.held += size
                self.buffered += size
                if not flags & END_STREAM:
                    if stream.inbox is None:
                        # A unary request must arrive whole anyway: credit it as it comes.
                        self._stream_credit(stream, length)
                    else:
                        # Streamed requests are credited as the handler takes them (backpressure).
                        stream.recv_credit += length - size  # padding is not the handler's to take
                        self._feed_inbox(stream)
        if flags & END_STREAM:
            self._end_of_request(stream)

    def _on_reset(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            if stream_id > self.last_stream_id:
                raise _ConnectionError(H2Error.PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}")
            return
        stream.done = True
        self._release(stream)
        self.blocked.pop(stream_id, None)
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        self.server.stream_finished()
        self._close_if_idle()

    # -- calls -----------------------------------------------------------------------------------

    def _stream_credit(self, stream: _Stream, length: int) -> None:
        """Give the peer ``length`` bytes of stream window back (in batches of half the window)."""
        stream.recv_credit += length
        if stream.recv_credit >= _RECV_WINDOW // 2 and not stream.ended and not stream.done:
            self.out.append(_frame(WINDOW_UPDATE, 0, stream.id, _U32.pack(stream.recv_credit)))
            stream.recv_credit = 0

    def _release(self, stream: _Stream, size: int | None = None) -> None:
        """``size`` bytes (all, if None) of ``stream``'s request are no longer held for its handler."""
        size = stream.held if size is None else min(size, stream.held)
        stream.held -= size
        self.buffered -= size

    def _feed_inbox(self, stream: _Stream) -> None:
        assert stream.inbox is not None
        try:
            for item in _split_messages(stream, self.limits.max_message_bytes):
                stream.inbox.put_nowait(item)
        except GrpcError as exc:
            self._finish(stream, exc.status, exc.message)

    def _taken(self, stream: _Stream, size: int) -> None:
        """A bidi handler took a message of ``size`` wire bytes: release it and credit the window."""
        self._release(stream, size)
        self._stream_credit(stream, size)
        self._flush()

    def _end_of_request(self, stream: _Stream) -> None:
        stream.ended = True
        if stream.done:
            return
        method = stream.method
        if method is None:
            return
        if method.kind == "bidi":
            self._feed_inbox(stream)
            if stream.inbox is not None:
                stream.inbox.put_nowait(None)
            return
        try:
            messages = [message for message, _ in _split_messages(stream, self.limits.max_message_bytes)]
            if len(messages) != 1 or stream.body:
                raise GrpcError(Status.INTERNAL, f"expected one request message, got {len(messages)}"
                                + (" and a partial one" if stream.body else ""))  # fmt: skip
        except GrpcError as exc:
            self._finish(stream, exc.status, exc.message)
            return
        self._release(stream)
        assert stream.context is not None
        if method.kind == "server_stream":
            request, context = messages[0], stream.context
            stream.task = asyncio.get_running_loop().create_task(
                self._run_stream(stream, lambda: method.handler(request, context))
            )
            return
        try:
            result = method.handler(messages[0], stream.context)
        except GrpcError as exc:
            self._finish(stream, exc.status, exc.message)
            return
        except Exception as exc:
            log.error("%s failed", stream.context.method, exc_info=exc)
            self._finish(stream, Status.INTERNAL, str(exc) or type(exc).__name__)
            return
        if isinstance(result, bytes):
            self._respond(stream, result)
        else:
            stream.task = task = asyncio.get_running_loop().create_task(self._run_unary(stream, result))
            if asyncio.iscoroutine(result):
                # A task cancelled before it starts never awaits ``result``: close it then.
                task.add_done_callback(lambda _: result.close())

    async def _with_deadline(self, stream: _Stream, work: Awaitable[Any]) -> Any:
        if stream.deadline is None:
            return await work
        return await asyncio.wait_for(work, max(0.0, stream.deadline - time.monotonic()))

    async def _run_unary(self, stream: _Stream, work: Awaitable[bytes]) -> None:
        try:
            response = await self._with_deadline(stream, work)
        except TimeoutError:
            self._finish(stream, Status.DEADLINE_EXCEEDED, "deadline exceeded")
        except GrpcError as exc:
            self._finish(stream, exc.status, exc.message)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            log.error("%s failed", stream.context.method if stream.context else "?", exc_info=exc)
            self._finish(stream, Status.INTERNAL, str(exc) or type(exc).__name__)
        else:
            self._respond(stream, response)
        self._flush()

    async def _run_stream(self, stream: _Stream, start: Callable[[], AsyncIterator[bytes]]) -> None:
        async def pump() -> None:
            async for message in start():
                if stream.done:
                    return
                self._send_message(stream, message)
                self._flush()
                # Produce the next message only once this one is out: within the peer's window
                # and into a transport that is not over its high-water mark.
                while stream.pending and not stream.done:
                    self.window_opened.clear()
                    await self.window_opened.wait()
                await self.write_ready.wait()

        try:
            await self._with_deadline(stream, pump())
        except TimeoutError:
            self._finish(stream, Status.DEADLINE_EXCEEDED, "deadline exceeded")
        except GrpcError as exc:
            self._finish(stream, exc.status, exc.message)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            log.error("%s failed", stream.context.method if stream.context else "?", exc_info=exc)
            self._finish(stream, Status.INTERNAL, str(exc) or type(exc).__name__)
        else:
            self._finish(stream, Status.OK, "")
        self._flush()

    async def _run_bidi(self, stream: _Stream) -> None:
        inbox = stream.inbox
        assert inbox is not None and stream.method is not None and stream.context is not None

        async def requests() -> AsyncIterator[bytes]:
            while True:
                item = await inbox.get()
                if item is None:
                    return
                message, size = item
                self._taken(stream, size)
                yield message

        handler, context = stream.method.handler, stream.context
        await self._run_stream(stream, lambda: handler(requests(), context))

    # -- responses -------------------------------------------------------------------------------

    def _respond(self, stream: _Stream, message: bytes) -> None:
        """A unary answer: headers, one message and OK trailers, in as few frames as the windows allow."""
        if stream.done:
            return
        self._send_message(stream, message)
        self._end(stream, self.blocks.ok_trailers)

    def _send_message(self, stream: _Stream, message: bytes) -> None:
        if not stream.headers_sent:
            stream.headers_sent = True
            self.out.append(_frame(HEADERS, END_HEADERS, stream.id, self.blocks.ok_headers))
        data = _MESSAGE.pack(0, len(message)) + message
        if stream.pending or stream.id in self.blocked:
            stream.pending += data
            return
        self._send_data(stream, data)

    def _send_data(self, stream: _Stream, data: bytes | bytearray) -> None:
        """DATA frames within the windows; the rest waits in ``stream.pending``."""
        view = memoryview(data)
        sid = stream.id
        frame_limit = self.peer_max_frame
        while view:
            room = min(len(view), stream.send_window, self.send_window, frame_limit)
            if room <= 0:
                stream.pending = bytearray(view)
                self.blocked[sid] = stream
                return
            self.out.append(_frame(DATA, 0, sid, bytes(view[:room])))
            stream.send_window -= room
            self.send_window -= room
            view = view[room:]
        stream.pending = bytearray()

    def _end(self, stream: _Stream, trailers: bytes) -> None:
        if stream.pending:
            stream.pending_end = trailers
            return
        self._headers(stream.id, END_STREAM, trailers)
        self._close_stream(stream)

    def _finish(self, stream: _Stream, status: Status, message: str) -> None:
        """End the call with ``status`` (Trailers-Only if no response headers went out yet)."""
        if stream.done:
            return
        if not stream.headers_sent:
            self._trailers_only(stream, status, message)
            return
        if status != Status.OK:  # an error drops whatever response data is still waiting
            stream.pending = bytearray()
            self.blocked.pop(stream.id, None)
        self._end(stream, self.blocks.status(status, message, trailers_only=False))

    def _trailers_only(self, stream: _Stream, status: Status, message: str, *, http_status: int = 200) -> None:
        stream.headers_sent = True
        block = self.blocks.status(status, message, trailers_only=True, http_status=http_status)
        self._headers(stream.id, END_STREAM, block)
        self._close_stream(stream)

    def _headers(self, stream_id: int, flags: int, block: bytes) -> None:
        """A header block as HEADERS, plus CONTINUATION frames if it is over the peer's frame size."""
        limit = self.peer_max_frame
        if len(block) <= limit:
            self.out.append(_frame(HEADERS, flags | END_HEADERS, stream_id, block))
            return
        self.out.append(_frame(HEADERS, flags, stream_id, block[:limit]))
        for start in range(limit, len(block), limit):
            last = start + limit >= len(block)
            self.out.append(_frame(CONTINUATION, END_HEADERS if last else 0, stream_id, block[start : start + limit]))

    def _close_stream(self, stream: _Stream) -> None:
        stream.done = True
        self._release(stream)
        if not stream.ended:
            # We answered before the request ended (an error): the rest of it is not wanted.
            self.out.append(_frame(RST_STREAM, 0, stream.id, _U32.pack(H2Error.NO_ERROR)))
        if self.streams.pop(stream.id, None) is not None:
            self.server.stream_finished()
        self.blocked.pop(stream.id, None)
        self._close_if_idle()

    def _reset(self, stream: _Stream, code: H2Error) -> None:
        self.out.append(_frame(RST_STREAM, 0, stream.id, _U32.pack(code)))
        stream.ended = True
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        self._close_stream(stream)

    def _drain_blocked(self) -> None:
        if not self.blocked:
            return
        self.window_opened.set()
        for stream in list(self.blocked.values()):
            if self.send_window <= 0:
                break
            if stream.send_window <= 0:
                continue
            del self.blocked[stream.id]
            pending = stream.pending
            stream.pending = bytearray()
            self._send_data(stream, pending)
            if not stream.pending and stream.pending_end is not None:
                trailers, stream.pending_end = stream.pending_end, None
                self._end(stream, trailers)

    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def _fail(self, code: H2Error, reason: str) -> None:
        log.info("closing HTTP/2 connection from %s: %s", self.peer, reason)
        self.out.append(_frame(GOAWAY, 0, 0, _U32.pack(self.last_stream_id) + _U32.pack(code) + reason.encode()[:256]))
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def go_away(self) -> None:
        """Graceful shutdown: tell the peer no new streams will be served, close when idle."""
        if self.closed:
            return
        self.going_away = True
        self.out.append(_frame(GOAWAY, 0, 0, _U32.pack(self.last_stream_id) + _U32.pack(H2Error.NO_ERROR)))
        self._flush()
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self.going_away and not self.streams and self.transport is not None:
            self._flush()
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (the grace period is over)."""
        if self.transport is not None:
            self.transport.abort()


class H2GrpcServer:
    """Serves ``methods`` (``"/package.Service/Method"`` → :class:`Method`) over h2c."""

    def __init__(self, methods: Mapping[str, Method], limits: Limits | None = None) -> None:
        self.methods = dict(methods)
        self.limits = limits or Limits()
        self.blocks = _HeaderBlocks()
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, name: str, method: Method) -> None:
        """Register one more method."""
        self.methods[name] = method

    def stream_started(self) -> None:
        """Bookkeeping for graceful stop."""
        self._active += 1
        self._idle.clear()

    def stream_finished(self, count: int = 1) -> None:
        """Bookkeeping for graceful stop."""
        self._active -= count
        if self._active <= 0:
            self._active = 0
            self._idle.set()

    async def start(self, sock: socket.socket) -> int:
        """Serve on a bound socket (listening or not); returns its port."""
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=2048)
        return int(sock.getsockname()[1])

    async def stop(self, grace: float) -> None:
        """Refuse new connections and streams; let running calls finish within ``grace`` seconds."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.go_away()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("gRPC: %d call(s) still running after %.1fs; closing", self._active, grace)
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
