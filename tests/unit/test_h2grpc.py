"""Protocol-level tests of :mod:`ladle.server.h2grpc`: grpcio as a real client, h2 and hand-made frames for the edges.

The server runs on an event loop in a background thread with test-only handlers. Three clients:

* grpcio generic calls (bytes in, bytes out), the way real gRPC clients talk to Ladle;
* :class:`H2Client`, the ``h2`` state machine over a plain socket: it checks the server's frames
  against HTTP/2's rules (windows, frame sizes, stream states) while we record every raw frame;
* :class:`RawClient`, frames written by hand (HPACK from ``hpack``) for input no real client sends.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import hashlib
import json
import queue
import random
import socket
import struct
import threading
import time
import urllib.parse
import warnings
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
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
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from ladle.server.h2grpc import CallContext, GrpcError, H2GrpcServer, Limits, Method, Status
from ladle.server.h2grpc import messages as h2grpc_messages

pytestmark = pytest.mark.timeout(60)

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


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def loop_thread(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    """Every test on both loops: ``ladle serve`` workers run on uvloop, whose transports differ from asyncio's."""
    loop = LoopThread(request.param)
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def state(loop_thread: LoopThread) -> State:
    """Probes and gates, fresh for each loop kind (so a probe set on one loop proves nothing on the other)."""
    return State()


@pytest.fixture(scope="module")
def served(loop_thread: LoopThread, state: State) -> Iterator[Served]:
    served = Served.start(loop_thread, state)
    yield served
    served.stop(1)


@pytest.fixture
def make_server(loop_thread: LoopThread, state: State) -> Iterator[Callable[..., Served]]:
    """Servers of one test (with their own limits); stopped at the end if the test did not."""
    started: list[Served] = []

    def make(limits: Limits | None = None) -> Served:
        started.append(Served.start(loop_thread, state, limits))
        return started[-1]

    yield make
    for s in started:
        s.stop(0.5)


@pytest.fixture
def channel(served: Served) -> Iterator[grpc.Channel]:
    """A fresh grpcio channel (so one connection) per test."""
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as ch:
        yield ch


def unary(ch: grpc.Channel, name: str) -> grpc.UnaryUnaryMultiCallable:
    return ch.unary_unary(f"/test.Svc/{name}", request_serializer=None, response_deserializer=None)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# -- unary calls -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Echo", "AsyncEcho"])
def test_unary_echo_round_trip(channel: grpc.Channel, name: str) -> None:
    call = unary(channel, name)
    for request in (b"", b"x", bytes(range(256)) * 7):
        response, rpc = call.with_call(request, timeout=5)
        assert response == request
        assert rpc.code() == grpc.StatusCode.OK


def test_more_than_5000_calls_on_one_channel(channel: grpc.Channel) -> None:
    peer = unary(channel, "Peer")
    first_peer = peer(b"", timeout=5)
    echo = unary(channel, "Echo")
    wrong = [i for i in range(6000) if echo(b"%d" % i, timeout=5) != b"%d" % i]
    assert wrong == []
    assert peer(b"", timeout=5) == first_peer  # one connection did it all: 6002 streams, ids past 12000


def test_200_concurrent_calls_on_one_connection(channel: grpc.Channel) -> None:
    gate = unary(channel, "Gate")  # answers only once all 200 calls are running at the same time
    futures = [gate.future(b"conc:200:%d" % i, timeout=10) for i in range(200)]
    answers = [f.result() for f in futures]
    requests = [a.split(b"|")[0] for a in answers]
    assert requests == [b"conc:200:%d" % i for i in range(200)]
    assert len({a.split(b"|")[1] for a in answers}) == 1  # one peer address: one connection


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


def test_bidi_message_declared_over_the_limit_is_refused_at_once(served: Served) -> None:
    """The 5-byte prefix announces 5 MiB: no need to wait for the 4 MiB limit to fill up."""
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/BidiEcho")
        client.send(frame(DATA, 0, 1, struct.pack(">BI", 0, 5 * MiB) + b"abc"))
        response = client.response(1)
        client.until(lambda: response.reset is not None)
    assert response.status == Status.RESOURCE_EXHAUSTED
    assert response.reset == ErrorCodes.NO_ERROR


# -- framing: CONTINUATION, padding, PING, SETTINGS ------------------------------------------------------


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


def test_client_goaway_lets_running_calls_finish(served: Served, state: State) -> None:
    with RawClient(served.port) as client:
        client.unary(1, "/test.Svc/Sleep", b"client-goaway:0.1")
        assert state.probe("client-goaway").started.wait(5)
        client.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, ErrorCodes.NO_ERROR)))
        response = client.response(1)
        assert response.status == Status.OK and response.messages == [b"slept:client-goaway"]
        client.until_closed()  # nothing left to do: the server closes


# -- statuses and errors -----------------------------------------------------------------------------------


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


def test_no_frame_after_a_stream_is_closed(served: Served) -> None:
    """A request with END_STREAM on its HEADERS, answered at once: the stream is closed, nothing may follow."""
    with RawClient(served.port) as client:
        client.headers(1, "/test.Svc/Echo", method="GET", end_stream=True)
        client.unary(3, "/test.Svc/Echo", b"next")
        client.response(1)
        client.response(3)
        on_stream_1 = [f.type for f in client.frames if f.stream == 1]
    assert on_stream_1 == [HEADERS]  # RFC 9113 5.1: no frame but PRIORITY on a closed stream


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


# -- deadlines and cancellation ----------------------------------------------------------------------------


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


# -- streaming -------------------------------------------------------------------------------------------


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


# -- compression -----------------------------------------------------------------------------------------


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


def test_decompression_bomb_is_resource_exhausted(served: Served) -> None:
    bomb = gzip.compress(bytes(8 * MiB))  # 8 KiB on the wire, 8 MiB decompressed
    with H2Client(served.port) as client:
        body = grpc_message(bomb, compressed=True)
        response = client.wait(client.start("/test.Svc/Digest", body, extra=[("grpc-encoding", "gzip")]))
    assert response.status == Status.RESOURCE_EXHAUSTED


# -- malformed input -------------------------------------------------------------------------------------

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


# -- graceful stop ---------------------------------------------------------------------------------------


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
