"""gRPC over HTTP/2: status codes, handlers and limits, request heads, message framing, response header blocks."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any

import hpack
from hpack import NeverIndexedHeaderTuple

MESSAGE = struct.Struct(">BI")  # gRPC message prefix: compressed flag, length


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


@dataclass
class CallContext:
    """What a handler may want to know about its call."""

    method: str
    metadata: Mapping[str, str]
    peer: str
    deadline: float | None  # time.monotonic() value, or None
    #: Response headers (initial metadata) a unary handler adds, e.g. ``[("x-request-id", "…")]``.
    response_metadata: list[tuple[str, str]] | None = None


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
    """What one connection (and one server, for the ``worker_`` and connection counts) may hold or do.

    Rates are token buckets: a burst of up to the rate, then the rate per second. A peer over a
    rate or a frame count gets GOAWAY ENHANCE_YOUR_CALM; the timeouts are in seconds.
    """

    max_message_bytes: int = 4 << 20
    max_buffered_bytes: int = 32 << 20  # request bytes waiting + response bytes blocked, per connection
    max_worker_buffered_bytes: int = 64 << 20  # the same over all of the server's connections
    max_concurrent_streams: int = 100  # advertised (SETTINGS_MAX_CONCURRENT_STREAMS) and enforced
    max_connections: int = 1000  # open connections per server; beyond it new ones are closed at once
    max_header_list_bytes: int = 64 << 10
    max_frame_size: int = 1 << 14  # what we accept (the RFC default; gRPC clients keep to it)
    max_continuation_frames: int = 32  # CONTINUATION frames in one header block
    control_frames_per_second: int = 1000  # PING, SETTINGS, PRIORITY, empty and no-op frames
    resets_per_second: int = 200  # RST_STREAM from the peer plus streams we had to refuse or reset
    handshake_timeout: float = 10.0  # connection open to client preface + SETTINGS received
    idle_timeout: float = 300.0  # no stream open for this long: GOAWAY, close
    stall_timeout: float = 30.0  # a request not complete, or a response blocked, this long: reset


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


class HeaderBlocks:
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

    def ok_headers_with(self, metadata: list[tuple[str, str]]) -> bytes:
        """The OK response headers plus ``metadata`` (encoded per call: only calls that add metadata pay)."""
        return self.encode([(":status", "200"), ("content-type", "application/grpc"), *metadata])

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


INDEXED_BYTES = bytes(range(0x80, 0xFF))  # deleting these leaves nothing iff a block is only 1-byte indexes


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


def table_neutral(block: bytes) -> bool:
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


# RFC 9113 section 8.2: field names are lowercase tokens; values hold no NUL, CR or LF and do not
# start or end with whitespace; connection-specific fields are not allowed (section 8.2.2).
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority"))


def malformed_field(name: bytes, value: bytes) -> str | None:
    """Why a regular (not pseudo) header field is malformed (RFC 9113 section 8.2), or None."""
    if not _FIELD_NAME.fullmatch(name):
        return f"invalid header name {name[:64]!r}"
    if _BAD_VALUE.search(value):
        return f"invalid value for header {name.decode('latin-1')!r}"
    if name in _CONNECTION_SPECIFIC:
        return f"connection-specific header {name.decode('latin-1')!r}"
    if name == b"te" and value != b"trailers":
        return "te other than 'trailers'"
    return None


def malformed_trailers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a request's trailer block is malformed (a pseudo-header or a bad field), or None."""
    for name, value in headers:
        if name[:1] == b":":
            return f"pseudo-header {name.decode('latin-1')!r} in trailers"
        if (why := malformed_field(name, value)) is not None:
            return why
    return None


class Head:
    """What a request's headers say: the method (or why there is no call), encoding, timeout, metadata.

    ``malformed`` says why the block breaks RFC 9113 section 8.2/8.3 (the stream is then reset
    with PROTOCOL_ERROR); ``error`` why it is no gRPC call Ladle serves (answered with a status).
    """

    __slots__ = ("encoding", "error", "malformed", "metadata", "method", "name", "timeout", "view")

    def __init__(self) -> None:
        self.name = ""
        self.method: Method | None = None
        self.error: tuple[Status, str, int] | None = None  # status, message, HTTP status
        self.malformed: str | None = None
        self.encoding = "identity"
        self.timeout: float | None = None
        self.metadata: dict[str, str] = {}
        self.view: Mapping[str, str] = MappingProxyType(self.metadata)  # what handlers get: read-only

    @classmethod
    def parse(cls, headers: list[tuple[bytes, bytes]], methods: Mapping[str, Method]) -> Head:
        """Check the request headers and find the method."""
        head = cls()
        verb = path = scheme = content_type = b""
        pseudo: set[bytes] = set()
        regular = False
        for name, value in headers:
            if name[:1] == b":":
                if regular or name not in _REQUEST_PSEUDO or name in pseudo:
                    head.malformed = f"pseudo-header {name.decode('latin-1')!r} misplaced, unknown or repeated"
                    return head
                pseudo.add(name)
                if _BAD_VALUE.search(value):
                    head.malformed = f"invalid value for {name.decode('latin-1')!r}"
                    return head
                if name == b":path":
                    path = value
                elif name == b":method":
                    verb = value
                elif name == b":scheme":
                    scheme = value
                continue
            regular = True
            if (why := malformed_field(name, value)) is not None:
                head.malformed = why
                return head
            if name == b"content-type":
                content_type = value
            else:
                head.metadata[name.decode("latin-1")] = value.decode("latin-1")
        if not (verb and scheme and path):
            head.malformed = "a request needs :method, :scheme and a non-empty :path"
            return head
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


def split_messages(body: bytearray, encoding: str, limit: int) -> list[tuple[bytes, int]]:
    """Complete gRPC messages at the front of ``body`` (removed from it), with their wire sizes."""
    out: list[tuple[bytes, int]] = []
    pos = 0
    while len(body) - pos >= 5:
        flag, length = MESSAGE.unpack_from(body, pos)
        if length > limit:
            too_big = f"request message of {length} bytes is over the {limit}-byte limit"
            raise GrpcError(Status.RESOURCE_EXHAUSTED, too_big)
        if len(body) - pos - 5 < length:
            break
        message = bytes(body[pos + 5 : pos + 5 + length])
        pos += 5 + length
        if flag & 1:
            message = decompress(message, encoding, limit)
        elif flag:
            raise GrpcError(Status.INTERNAL, f"invalid message flags {flag:#x}")
        out.append((message, 5 + length))
    if pos:
        del body[:pos]
    return out


def decompress(message: bytes, encoding: str, limit: int) -> bytes:
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
