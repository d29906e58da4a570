"""Test support for :mod:`ladle.server.h2grpc`: wire facts, clients, the test server and its handlers.

The server runs on an event loop in a background thread with test-only handlers. Three clients:

* grpcio generic calls (bytes in, bytes out), the way real gRPC clients talk to Ladle;
* :class:`H2Client`, the ``h2`` state machine over a plain socket: it checks the server's frames
  against HTTP/2's rules (windows, frame sizes, stream states) while we record every raw frame;
* :class:`RawClient`, frames written by hand (HPACK from ``hpack``) for input no real client sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
import uvloop
from h2.settings import SettingCodes

from ladle.server.h2grpc import CallContext, GrpcError, H2GrpcServer, Limits, Method, Status

# -- HTTP/2 wire facts (RFC 9113), written out here rather than imported from the module under test --

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
MAX_FRAME = 16_384  # SETTINGS_MAX_FRAME_SIZE's initial value, and what the server advertises
MiB = 1 << 20


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    return len(payload).to_bytes(3, "big") + struct.pack(">BBI", ftype, flags, stream_id) + payload


def settings_payload(values: dict[int, int]) -> bytes:
    return b"".join(struct.pack(">HI", key, value) for key, value in values.items())


def grpc_message(data: bytes, *, compressed: bool = False) -> bytes:
    """A gRPC length-prefixed message."""
    return struct.pack(">BI", int(compressed), len(data)) + data


def grpc_messages(body: bytes) -> list[bytes]:
    """Split a response body into its gRPC messages (none may be compressed)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(body):
        flag, length = struct.unpack_from(">BI", body, pos)
        assert flag == 0, "the server does not compress responses"
        assert pos + 5 + length <= len(body), "truncated gRPC message"
        out.append(body[pos + 5 : pos + 5 + length])
        pos += 5 + length
    return out


def payload_of(n: int) -> bytes:
    """``n`` deterministic, non-repeating bytes (a reordered or dropped chunk changes them)."""
    return random.Random(n).randbytes(n)


@dataclass
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes

    @property
    def error_code(self) -> int:
        """The error code of a GOAWAY or RST_STREAM frame."""
        if self.type == GOAWAY:
            return int.from_bytes(self.payload[4:8], "big")
        assert self.type == RST_STREAM
        return int.from_bytes(self.payload[:4], "big")


def parse_frames(buf: bytes) -> tuple[list[Frame], bytes]:
    """The complete frames at the front of ``buf`` and the bytes left over."""
    frames: list[Frame] = []
    pos = 0
    while len(buf) - pos >= 9:
        length = int.from_bytes(buf[pos : pos + 3], "big")
        ftype, flags, stream_id = struct.unpack_from(">BBI", buf, pos + 3)
        if len(buf) - pos - 9 < length:
            break
        frames.append(Frame(ftype, flags, stream_id & 0x7FFFFFFF, buf[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return frames, buf[pos:]


def request_headers(
    path: str, *, method: str = "POST", content_type: str = "application/grpc", extra: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1"),
        ("content-type", content_type),
        ("te", "trailers"),
        *extra,
    ]


@dataclass
class Response:
    """What came back on one stream."""

    headers: dict[bytes, bytes] | None = None
    data: bytearray = field(default_factory=bytearray)
    trailers: dict[bytes, bytes] | None = None
    ended: bool = False
    reset: int | None = None

    @property
    def closed(self) -> bool:
        return self.ended or self.reset is not None

    @property
    def status(self) -> int:
        """grpc-status, from the trailers (or the only header block of a Trailers-Only response)."""
        block = self.trailers if self.trailers is not None else self.headers
        assert block is not None, f"no trailers (reset: {self.reset})"
        return int(block[b"grpc-status"])

    @property
    def message(self) -> str:
        block = self.trailers if self.trailers is not None else self.headers
        assert block is not None
        return urllib.parse.unquote(block.get(b"grpc-message", b"").decode("ascii"))

    @property
    def messages(self) -> list[bytes]:
        return grpc_messages(bytes(self.data))


class Wire:
    """A TCP connection to the server whose incoming bytes are also split into frames (``self.frames``)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # our small writes go out at once
        self._buf = b""
        self.frames: list[Frame] = []  # every frame received, in order
        self.eof = False

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self, timeout: float = 5.0) -> list[Frame]:
        """The frames completed by the next read ([] at EOF); raises TimeoutError if nothing arrives."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return []
        frames, self._buf = parse_frames(self._buf + data)
        self.frames += frames
        self.absorb(data, frames)
        return frames

    def absorb(self, data: bytes, frames: list[Frame]) -> None:
        """Hook: what a client does with what it read."""

    def quiet(self, seconds: float) -> bool:
        """Whether nothing at all arrives within ``seconds``."""
        try:
            frames = self.receive(seconds)
        except TimeoutError:
            return True
        return not frames and not self.eof

    def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Read until ``condition()`` holds (the connection must stay open)."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.receive(max(0.01, deadline - time.monotonic()))
            assert not self.eof, f"connection closed: {self.frames[-3:]}"

    def until_closed(self, timeout: float = 5.0) -> list[Frame]:
        """Every frame up to EOF (the server must close within ``timeout``)."""
        deadline = time.monotonic() + timeout
        start = len(self.frames)
        while not self.eof:
            self.receive(max(0.01, deadline - time.monotonic()))
        return self.frames[start:]


class RawClient(Wire):
    """Hand-made frames, HPACK-encoded headers; decodes every response header block in order."""

    def __init__(self, port: int, settings: dict[int, int] | None = None) -> None:
        super().__init__(port)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.responses: dict[int, Response] = {}
        self._block: tuple[int, int, bytearray] | None = None  # a header block waiting for its CONTINUATIONs
        self.send(PREFACE + frame(SETTINGS, 0, 0, settings_payload(settings or {})))

    def headers_frame(self, stream_id: int, path: str, *, end_stream: bool = False, **kwargs: Any) -> bytes:
        block = self.encoder.encode(request_headers(path, **kwargs))
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream_id, block)

    def headers(self, stream_id: int, path: str, *, end_stream: bool = False, **kwargs: Any) -> None:
        self.send(self.headers_frame(stream_id, path, end_stream=end_stream, **kwargs))

    def unary(self, stream_id: int, path: str, request: bytes, **kwargs: Any) -> None:
        self.send(
            self.headers_frame(stream_id, path, **kwargs) + frame(DATA, END_STREAM, stream_id, grpc_message(request))
        )

    def absorb(self, data: bytes, frames: list[Frame]) -> None:
        for f in frames:
            if self._block is not None:  # RFC 9113 6.10: nothing may come between HEADERS and its CONTINUATIONs
                assert f.type == CONTINUATION and f.stream == self._block[0], f"{f} inside a header block"
                self._block[2].extend(f.payload)
                if f.flags & END_HEADERS:
                    stream_id, flags, block = self._block
                    self._block = None
                    self._header_block(stream_id, flags, bytes(block))
                continue
            assert f.type != CONTINUATION, "CONTINUATION without HEADERS"
            if f.type == HEADERS:
                assert not f.flags & (PADDED | PRIORITY_FLAG)  # the server sends neither
                if f.flags & END_HEADERS:
                    self._header_block(f.stream, f.flags, f.payload)
                else:
                    self._block = (f.stream, f.flags, bytearray(f.payload))
            elif f.type == DATA:
                response = self.responses.setdefault(f.stream, Response())
                response.data += f.payload
                response.ended |= bool(f.flags & END_STREAM)
            elif f.type == RST_STREAM:
                self.responses.setdefault(f.stream, Response()).reset = f.error_code

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        response = self.responses.setdefault(stream_id, Response())
        headers = dict(self.decoder.decode(block, raw=True))
        if response.headers is None:
            response.headers = headers
        else:
            response.trailers = headers
        response.ended |= bool(flags & END_STREAM)

    def response(self, stream_id: int, timeout: float = 5.0) -> Response:
        deadline = time.monotonic() + timeout
        while not self.responses.get(stream_id, Response()).closed:
            self.receive(max(0.01, deadline - time.monotonic()))
            assert not self.eof, f"connection closed before stream {stream_id} ended: {self.frames[-3:]}"
        return self.responses[stream_id]


class H2Client(Wire):
    """The ``h2`` client state machine over the socket; every raw frame is recorded too.

    ``h2`` raises if the server breaks the protocol (overruns a window, sends an oversized frame,
    writes on a closed stream, sends malformed headers), so every test using it also checks that.
    """

    def __init__(self, port: int, settings: dict[SettingCodes, int] | None = None, *, auto_window: bool = True) -> None:
        super().__init__(port)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        if settings:
            initial = {SettingCodes.MAX_CONCURRENT_STREAMS: 100, SettingCodes.MAX_HEADER_LIST_SIZE: 65536, **settings}
            self.h2.local_settings = h2.settings.Settings(client=True, initial_values=initial)
            self.h2.max_inbound_frame_size = self.h2.local_settings.max_frame_size
        self.auto_window = auto_window  # give back flow-control window as data arrives
        self.responses: dict[int, Response] = {}
        self.events: list[h2.events.Event] = []
        self.h2.initiate_connection()
        self.flush()

    def flush(self, rewrite: Callable[[bytes], bytes] | None = None) -> None:
        data = self.h2.data_to_send()
        if rewrite is not None:
            data = rewrite(data)
        if data:
            self.send(data)

    def absorb(self, data: bytes, frames: list[Frame]) -> None:
        events = self.h2.receive_data(data)
        self.events += events
        for event in events:
            sid = getattr(event, "stream_id", None)
            if sid is None:
                continue
            response = self.responses.setdefault(sid, Response())
            if isinstance(event, h2.events.ResponseReceived):
                response.headers = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.TrailersReceived):
                response.trailers = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                response.data += event.data or b""
                if self.auto_window and event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, h2.events.StreamEnded):
                response.ended = True
            elif isinstance(event, h2.events.StreamReset):
                response.reset = int(event.error_code or 0)
        self.flush()

    def start(
        self,
        path: str,
        body: bytes | None,
        *,
        rewrite: Callable[[bytes], bytes] | None = None,
        pad_length: int | None = None,
        **kwargs: Any,
    ) -> int:
        """Open a stream; send ``body`` (raw DATA bytes) and END_STREAM unless it is None."""
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, request_headers(path, **kwargs), end_stream=body is None)
        self.flush(rewrite)
        if body is not None:
            self.send_body(sid, body, pad_length=pad_length)
        return sid

    def send_body(self, sid: int, body: bytes, *, end_stream: bool = True, pad_length: int | None = None) -> None:
        """DATA frames as the server's windows allow (reading its WINDOW_UPDATEs while blocked)."""
        view = memoryview(body)
        overhead = 0 if pad_length is None else pad_length + 1
        while True:
            room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size) - overhead
            if room <= 0 and view:
                self.receive()
                assert not self.eof, "server closed the connection while we were sending"
                continue
            chunk, view = view[:room], view[room:]
            last = not view
            self.h2.send_data(sid, bytes(chunk), end_stream=end_stream and last, pad_length=pad_length)
            self.flush()
            if last:
                return

    def wait(self, sid: int, timeout: float = 10.0) -> Response:
        deadline = time.monotonic() + timeout
        while not self.responses.get(sid, Response()).closed:
            self.receive(max(0.01, deadline - time.monotonic()))
            assert not self.eof, f"connection closed before stream {sid} ended: {self.frames[-3:]}"
        return self.responses[sid]

    def call(self, path: str, request: bytes, **kwargs: Any) -> Response:
        return self.wait(self.start(path, grpc_message(request), **kwargs))


# -- the server, its handlers and the loop it runs on ----------------------------------------------


class Probe:
    """What a handler went through, visible from the test thread."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.slept = threading.Event()  # the handler's sleep ran to its end
        self.cancelled = threading.Event()  # the handler saw CancelledError
        self.finished = threading.Event()  # the handler's ``finally`` ran
        self.produced = 0  # messages a streaming handler has yielded


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.probes: dict[str, Probe] = {}
        self.gates: dict[str, tuple[list[int], asyncio.Event]] = {}  # loop thread only
        self.calls: list[bytes] = []  # requests of Record, in the order the server ran them

    def probe(self, key: str) -> Probe:
        with self.lock:
            return self.probes.setdefault(key, Probe())


class Handlers:
    """The test methods (``/test.Svc/<Name>``); what they go through is recorded in ``state``."""

    def __init__(self, state: State) -> None:
        self.state = state

    def echo(self, request: bytes, ctx: CallContext) -> bytes:
        return request

    async def async_echo(self, request: bytes, ctx: CallContext) -> bytes:
        await asyncio.sleep(0)
        return request

    def digest(self, request: bytes, ctx: CallContext) -> bytes:
        encoding = ctx.metadata.get("grpc-encoding", "identity")
        answer = {"len": len(request), "sha256": hashlib.sha256(request).hexdigest(), "encoding": encoding}
        return json.dumps(answer).encode()

    def peer(self, request: bytes, ctx: CallContext) -> bytes:
        return ctx.peer.encode()

    def meta(self, request: bytes, ctx: CallContext) -> bytes:
        return json.dumps(dict(ctx.metadata), sort_keys=True).encode()

    def write_meta(self, request: bytes, ctx: CallContext) -> bytes:
        ctx.metadata["x-written"] = "yes"  # type: ignore[index]  # it must be read-only
        return b"wrote"

    def deadline(self, request: bytes, ctx: CallContext) -> bytes:
        return b"none" if ctx.deadline is None else b"%.3f" % (ctx.deadline - time.monotonic())

    def record(self, request: bytes, ctx: CallContext) -> bytes:
        self.state.calls.append(request)
        return b""

    def big(self, request: bytes, ctx: CallContext) -> bytes:
        return payload_of(int(request))

    def not_found(self, request: bytes, ctx: CallContext) -> bytes:
        raise GrpcError(Status.NOT_FOUND, "näh 100%")

    async def async_not_found(self, request: bytes, ctx: CallContext) -> bytes:
        await asyncio.sleep(0)
        raise GrpcError(Status.NOT_FOUND, "näh 100%")

    def long_error(self, request: bytes, ctx: CallContext) -> bytes:
        raise GrpcError(Status.ABORTED, "x" * int(request))

    def crash(self, request: bytes, ctx: CallContext) -> bytes:
        raise RuntimeError("boom")

    async def async_crash(self, request: bytes, ctx: CallContext) -> bytes:
        await asyncio.sleep(0)
        raise ValueError("async boom")

    async def sleep(self, request: bytes, ctx: CallContext) -> bytes:
        """``key:seconds``: sleep, then answer ``slept:key``."""
        key, seconds = request.decode().split(":")
        probe = self.state.probe(key)
        probe.started.set()
        try:
            await asyncio.sleep(float(seconds))
            probe.slept.set()
            return b"slept:" + key.encode()
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        finally:
            probe.finished.set()

    async def gate(self, request: bytes, ctx: CallContext) -> bytes:
        """``key:n:i``: answer only once ``n`` calls with this key are running at the same time."""
        key, n, _ = request.decode().split(":")
        count, opened = self.state.gates.setdefault(key, ([0], asyncio.Event()))
        count[0] += 1
        if count[0] >= int(n):
            opened.set()
        await asyncio.wait_for(opened.wait(), 5)
        return request + b"|" + ctx.peer.encode()

    async def count(self, request: bytes, ctx: CallContext) -> AsyncIterator[bytes]:
        for i in range(int(request)):
            yield b"%d" % i
            if i % 100 == 0:
                await asyncio.sleep(0)

    async def count_then_fail(self, request: bytes, ctx: CallContext) -> AsyncIterator[bytes]:
        for i in range(3):
            yield b"%d" % i
        raise GrpcError(Status.ABORTED, "stopped at 3")

    async def stream_hang(self, request: bytes, ctx: CallContext) -> AsyncIterator[bytes]:
        probe = self.state.probe(request.decode())
        try:
            yield b"first"
            probe.started.set()
            await asyncio.sleep(60)
            probe.slept.set()
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        finally:
            probe.finished.set()

    async def flood(self, request: bytes, ctx: CallContext) -> AsyncIterator[bytes]:
        """1000 messages of 1 KiB, as fast as the server takes them."""
        probe = self.state.probe(request.decode())
        for _ in range(1000):
            probe.produced += 1
            yield bytes(1024)
        probe.finished.set()

    async def bidi_echo(self, requests: AsyncIterator[bytes], ctx: CallContext) -> AsyncIterator[bytes]:
        async for message in requests:
            yield message

    async def bidi_never_reads(self, requests: AsyncIterator[bytes], ctx: CallContext) -> AsyncIterator[bytes]:
        probe = self.state.probe("never-reads")
        probe.started.set()
        try:
            await asyncio.sleep(60)
        finally:
            probe.finished.set()
        yield b""

    async def bidi_digest(self, requests: AsyncIterator[bytes], ctx: CallContext) -> AsyncIterator[bytes]:
        async for message in requests:
            yield hashlib.sha256(message).digest()

    def methods(self) -> dict[str, Method]:
        unary = {
            "Echo": self.echo, "AsyncEcho": self.async_echo, "Digest": self.digest, "Peer": self.peer,
            "Meta": self.meta, "WriteMeta": self.write_meta, "Deadline": self.deadline, "Big": self.big,
            "NotFound": self.not_found,
            "AsyncNotFound": self.async_not_found, "LongError": self.long_error, "Crash": self.crash,
            "AsyncCrash": self.async_crash, "Sleep": self.sleep, "Hang": self.sleep, "Gate": self.gate,
            "Record": self.record,
        }  # fmt: skip
        streams = {
            "Count": self.count,
            "CountThenFail": self.count_then_fail,
            "StreamHang": self.stream_hang,
            "Flood": self.flood,
        }
        methods = {f"/test.Svc/{name}": Method.unary(handler) for name, handler in unary.items()}
        methods.update({f"/test.Svc/{name}": Method.server_stream(handler) for name, handler in streams.items()})
        methods["/test.Svc/BidiEcho"] = Method.bidi(self.bidi_echo)
        methods["/test.Svc/BidiDigest"] = Method.bidi(self.bidi_digest)
        methods["/test.Svc/BidiNeverReads"] = Method.bidi(self.bidi_never_reads)
        return methods


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self, kind: str = "asyncio") -> None:
        self.loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="h2grpc-test-loop", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.get_running_loop().shutdown_asyncgens()

        self.run(cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.loop.close()


@dataclass
class Served:
    server: H2GrpcServer
    port: int
    loop: LoopThread

    @classmethod
    def start(cls, loop: LoopThread, state: State, limits: Limits | None = None) -> Served:
        async def start() -> tuple[H2GrpcServer, int]:
            server = H2GrpcServer(Handlers(state).methods(), limits)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            return server, await server.start(sock)

        server, port = loop.run(start())
        return cls(server, port, loop)

    def stop(self, grace: float) -> None:
        self.loop.run(self.server.stop(grace), timeout=grace + 10)

    def stop_in_background(self, grace: float) -> Future[None]:
        return self.loop.submit(self.server.stop(grace))


def unary(ch: grpc.Channel, name: str) -> grpc.UnaryUnaryMultiCallable:
    return ch.unary_unary(f"/test.Svc/{name}", request_serializer=None, response_deserializer=None)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value
