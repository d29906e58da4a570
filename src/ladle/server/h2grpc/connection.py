"""The HTTP/2 side of a connection: frames in, budgets, backpressure and timeouts.

:class:`Http2Connection` parses frames (a turn at a time), spends the peer's budgets, stops
reading while its writes are paused and enforces the timeouts; the streams, windows and what
goes out are its base :class:`.streams.StreamSet`'s. What a request means is left to a
subclass (:class:`.calls.GrpcConnection`) through two hooks: :meth:`Http2Connection.header_block`
and :meth:`Http2Connection.request_data`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, cast

import hpack

from ladle.server.h2grpc.frames import (
    ACK,
    CONTINUATION,
    DATA,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    FRAME,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RECV_WINDOW,
    RST_STREAM,
    SETTING_ENABLE_PUSH,
    SETTING_INITIAL_WINDOW_SIZE,
    SETTING_MAX_CONCURRENT_STREAMS,
    SETTING_MAX_FRAME_SIZE,
    SETTING_MAX_HEADER_LIST_SIZE,
    SETTINGS,
    U16U32,
    U32,
    WINDOW_UPDATE,
    H2ConnectionError,
    H2Error,
    frame,
)  # fmt: skip
from ladle.server.h2grpc.guards import Budget
from ladle.server.h2grpc.streams import Stream, StreamOwner, StreamSet

log = logging.getLogger(__package__)

# One turn: what of one connection's input is parsed before other connections get the event loop
# back (a few milliseconds at most): up to 64 KiB of frames, of which up to 50 HEADERS (calls).
BYTES_PER_TURN = 64 << 10
CALLS_PER_TURN = 50
_WRITES, _TURN = 1, 2  # why reading is paused: the transport's buffer is full; yielding the loop


class ConnectionOwner(StreamOwner, Protocol):
    """What a connection needs from the server that accepted it."""

    @property
    def connections(self) -> set[Http2Connection]:
        """Open connections (a connection adds and removes itself)."""
        ...


STALL_GRACE = 0.005
"""Seconds a connection must have been stalled before a new one may displace it at the cap."""


def _displace_one(connections: set[Http2Connection]) -> bool:
    """At the connection cap: close the connection stalled longest to make room; False if none is stalled.

    Stalled means: still without the client's preface and SETTINGS (a half-open or slowloris
    connection), else without a stream now or since the last sweep (idle). A connection with a
    call in flight is never displaced, so the cap still refuses a flood of busy connections.
    """
    limit = time.monotonic() - STALL_GRACE
    best: Http2Connection | None = None
    best_key = (2, limit)
    for connection in connections:
        if connection.closed:
            continue
        if not connection.settings_seen:
            key = (0, connection.opened)
        elif not connection.streams and connection.last_stream_id == connection.idle_mark:
            key = (1, connection.idle_since)
        else:
            continue
        if key[1] <= limit and key < best_key:
            best, best_key = connection, key
    if best is None:
        return False
    log.info("gRPC: at the connection cap; closing the stalled connection from %s", best.peer)
    best.closed = True
    best.abort()
    best.server.connections.discard(best)
    return True


class Http2Connection(StreamSet):
    """One client connection, HTTP/2 side: frames in, budgets and timeouts; the streams are :class:`.StreamSet`'s."""

    __slots__ = (
        "buf", "continuation", "continuations", "control", "decoder", "idle_mark", "opened", "paused", "peer",
        "preface_seen", "recv_credit", "resets", "settings_seen", "write_paused_at", "write_ready",
    )  # fmt: skip

    def __init__(self, server: ConnectionOwner) -> None:
        super().__init__(server)
        self.server: ConnectionOwner = server
        limits = self.limits
        self.opened = time.monotonic()  # exact: the cap displaces the oldest half-open connection first
        self.idle_mark = 0  # last_stream_id at the last sweep: a new one means the connection is in use
        self.control = Budget(limits.control_frames_per_second)
        self.resets = Budget(limits.resets_per_second)
        self.paused = 0  # _WRITES | _TURN: why reading is paused
        self.write_paused_at = 0.0
        self.peer = ""
        self.buf = b""
        self.preface_seen = False
        self.settings_seen = False
        self.decoder = hpack.Decoder(max_header_list_size=limits.max_header_list_bytes)
        self.decoder.max_allowed_table_size = 4096
        self.recv_credit = 0  # connection-level bytes received since our last WINDOW_UPDATE
        self.continuation: tuple[int, int, bytearray] | None = None  # (stream id, flags, block so far)
        self.continuations = 0  # CONTINUATION frames in the header block being read
        self.write_ready = asyncio.Event()
        self.write_ready.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send our SETTINGS and open the connection receive window."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):  # gRPC's peer format: ipv4:host:port or ipv6:[host]:port
            host = peer[0]
            self.peer = f"ipv6:[{host}]:{peer[1]}" if ":" in host else f"ipv4:{host}:{peer[1]}"
        else:
            self.peer = str(peer)
        if len(self.server.connections) >= self.limits.max_connections and not _displace_one(self.server.connections):
            log.warning("gRPC: %d connections open; closing the one from %s", len(self.server.connections), self.peer)
            self.closed = True
            goaway = U32.pack(0) + U32.pack(H2Error.ENHANCE_YOUR_CALM) + b"too many connections"
            self.transport.write(frame(SETTINGS, 0, 0) + frame(GOAWAY, 0, 0, goaway))
            self.transport.close()
            return
        self.server.connections.add(self)
        settings = b"".join(
            U16U32.pack(k, v)
            for k, v in (
                (SETTING_ENABLE_PUSH, 0),
                (SETTING_MAX_CONCURRENT_STREAMS, self.limits.max_concurrent_streams),
                (SETTING_INITIAL_WINDOW_SIZE, RECV_WINDOW),
                (SETTING_MAX_FRAME_SIZE, self.limits.max_frame_size),
                (SETTING_MAX_HEADER_LIST_SIZE, self.limits.max_header_list_bytes),
            )
        )
        self.transport.write(
            frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, U32.pack(RECV_WINDOW - DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel every call still running, give back the bytes held."""
        self.closed = True
        self.server.connections.discard(self)
        for stream in self.streams.values():
            stream.done = True
            self._free(stream)
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
        if self.streams:
            self.server.stream_finished(len(self.streams))
        self.streams.clear()
        self.blocked.clear()
        self.write_ready.set()
        self.window_opened.set()

    def pause_writing(self) -> None:
        """The transport's buffer is full: streaming handlers wait, and we read nothing more (backpressure)."""
        self.write_ready.clear()
        self.write_paused_at = self.pool.now
        self._pause(_WRITES)

    def resume_writing(self) -> None:
        """The transport drained."""
        self.write_ready.set()
        self._resume(_WRITES)

    def _pause(self, why: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= why

    def _resume(self, why: int) -> None:
        if self.paused & why:
            self.paused &= ~why
            if not self.paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def _next_turn(self) -> None:
        """Parse what the last turn left (reading stays paused until it is all parsed)."""
        if not self.closed:
            self.data_received(b"")

    def data_received(self, data: bytes) -> None:
        """Parse complete frames (a turn's worth); write what they produced in one go."""
        if self.closed:
            return
        buf = self.buf + data if self.buf else data
        try:
            if not self.preface_seen:
                if len(buf) < len(PREFACE):
                    if not PREFACE.startswith(buf):
                        raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "not an HTTP/2 client preface")
                    self.buf = buf
                    return
                if not buf.startswith(PREFACE):
                    raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "not an HTTP/2 client preface")
                buf = buf[len(PREFACE) :]
                self.preface_seen = True
            pos = self._frames(buf)
            if pos < 0:  # a full turn: let other connections run, then parse the rest
                self.buf = buf[-pos:]
                self._pause(_TURN)
                asyncio.get_running_loop().call_soon(self._next_turn)
            else:
                self.buf = buf[pos:]
                if self.paused & _TURN:
                    self._resume(_TURN)
                if len(self.buf) > self.limits.max_frame_size + 9:
                    raise H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
        except H2ConnectionError as exc:
            self._fail(exc.code, str(exc))
        self._flush()

    def eof_received(self) -> bool:
        """The peer half-closed: close once our pending writes are out."""
        return False

    def _frames(self, buf: bytes) -> int:
        """Parse frames from ``buf``; the position after the last one (negated if the turn ran out)."""
        pos = 0
        end = len(buf)
        stop = end if end <= BYTES_PER_TURN else BYTES_PER_TURN  # this turn parses up to here
        limit = self.limits.max_frame_size
        calls = CALLS_PER_TURN
        while stop - pos >= 9:
            high, low, ftype, flags, stream_id = FRAME.unpack_from(buf, pos)
            length = (high << 16) | low
            if length > limit:
                raise H2ConnectionError(H2Error.FRAME_SIZE_ERROR, f"a {length}-byte frame is over {limit}")
            if stop - pos - 9 < length:
                break
            payload = buf[pos + 9 : pos + 9 + length]
            pos += 9 + length
            stream_id &= 0x7FFFFFFF
            if self.continuation is not None and ftype != CONTINUATION:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "expected CONTINUATION")
            if not self.settings_seen:
                if ftype != SETTINGS or flags & ACK:
                    raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "the first frame must be SETTINGS")
                self.settings_seen = True
            if ftype == DATA:
                if not length and not flags & END_STREAM:
                    self._spend_control()
                self._on_data(stream_id, flags, payload)
            elif ftype == HEADERS:
                self._on_headers(stream_id, flags, payload)
                calls -= 1
                if not calls:
                    break
            elif ftype == CONTINUATION:
                self._on_continuation(stream_id, flags, payload)
            elif ftype == SETTINGS:
                self._spend_control(max(1, length // 6))  # each entry costs: thousands in one frame are an attack
                self._on_settings(stream_id, flags, payload)
            elif ftype == WINDOW_UPDATE:
                self._on_window_update(stream_id, payload)
            else:
                self._on_other(ftype, flags, stream_id, payload)
        if (stop < end or not calls) and end - pos >= 9:
            return -int(pos)  # the turn is over, not the data
        return pos

    def _on_other(self, ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
        """PING, RST_STREAM, GOAWAY, PRIORITY, PUSH_PROMISE and unknown frames."""
        length = len(payload)
        if ftype == PING:
            self._spend_control()
            if stream_id:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "PING on a stream")
            if length != 8:
                raise H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "PING must be 8 bytes")
            if not flags & ACK:
                self.out.append(frame(PING, ACK, 0, payload))
        elif ftype == RST_STREAM:
            self._spend_reset()
            if not stream_id:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if length != 4:
                raise H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "RST_STREAM must be 4 bytes")
            self._on_reset(stream_id)
        elif ftype == GOAWAY:
            self.going_away = True
            self._close_if_idle()
        elif ftype == PRIORITY:
            self._spend_control()
            if not stream_id or length != 5:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "malformed PRIORITY")
        elif ftype == PUSH_PROMISE:
            raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "clients cannot push")
        else:  # other frame types are ignored (RFC 9113 section 4.1), but not for free
            self._spend_control()

    def _spend_control(self, cost: int = 1) -> None:
        """A frame that costs us work without moving a call along (PING, SETTINGS, empty or no-op frames)."""
        if not self.control.spend(cost):
            raise H2ConnectionError(H2Error.ENHANCE_YOUR_CALM, "too many control frames")

    def _spend_reset(self) -> None:
        """One stream we had to refuse or reset because of the peer."""
        if not self.resets.spend():
            raise H2ConnectionError(H2Error.ENHANCE_YOUR_CALM, "too many stream resets")

    def _on_headers(self, stream_id: int, flags: int, payload: bytes) -> None:
        if not stream_id or not stream_id & 1:
            raise H2ConnectionError(H2Error.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        start = 0
        end = len(payload)
        if flags & PADDED:
            if not payload:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "padded frame without a pad length")
            start = 1
            end -= payload[0]
        if flags & PRIORITY_FLAG:
            start += 5
        if end < start:
            raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "padding longer than the frame")
        block = payload[start:end]
        if not block:
            self._spend_control()
        if not flags & END_HEADERS:
            self.continuation = (stream_id, flags, bytearray(block))
            self.continuations = 0
            return
        self.header_block(stream_id, flags, block)

    def _on_continuation(self, stream_id: int, flags: int, payload: bytes) -> None:
        if self.continuation is None or self.continuation[0] != stream_id:
            raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        _, first_flags, block = self.continuation
        self.continuations += 1
        if self.continuations > self.limits.max_continuation_frames:
            raise H2ConnectionError(H2Error.ENHANCE_YOUR_CALM, "too many CONTINUATION frames in a header block")
        if not payload:
            self._spend_control()
        block += payload
        if len(block) > self.limits.max_header_list_bytes:
            raise H2ConnectionError(H2Error.ENHANCE_YOUR_CALM, "header block over the limit")
        if flags & END_HEADERS:
            self.continuation = None
            self.header_block(stream_id, first_flags, bytes(block))

    def _on_data(self, stream_id: int, flags: int, payload: bytes) -> None:
        length = len(payload)
        self.recv_credit += length
        if self.recv_credit >= RECV_WINDOW // 2:
            self.out.append(frame(WINDOW_UPDATE, 0, 0, U32.pack(self.recv_credit)))
            self.recv_credit = 0
        if not stream_id:
            raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "DATA on stream 0")
        stream = self.streams.get(stream_id)
        if stream is None or stream.ended:
            if stream_id > self.last_stream_id:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            return  # a stream we already answered (or reset): drop, as RFC 9113 allows
        if flags & PADDED:
            if not payload or payload[0] >= length:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "bad padding")
            payload = payload[1 : length - payload[0]]
        self.request_data(stream, payload, length, bool(flags & END_STREAM))

    def _on_reset(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            if stream_id > self.last_stream_id:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}")
            return
        stream.done = True
        self._free(stream)
        self.blocked.pop(stream_id, None)
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        self.server.stream_finished()
        self._close_if_idle()

    def _fail(self, code: H2Error, reason: str) -> None:
        log.info("closing HTTP/2 connection from %s: %s", self.peer, reason)
        self.out.append(frame(GOAWAY, 0, 0, U32.pack(self.last_stream_id) + U32.pack(code) + reason.encode()[:256]))
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def go_away(self) -> None:
        """Graceful shutdown: tell the peer no new streams will be served, close when idle."""
        if self.closed:
            return
        self.going_away = True
        self.out.append(frame(GOAWAY, 0, 0, U32.pack(self.last_stream_id) + U32.pack(H2Error.NO_ERROR)))
        self._flush()
        self._close_if_idle()

    def abort(self) -> None:
        """Drop the connection now (the grace period is over)."""
        if self.transport is not None:
            self.transport.abort()

    def check_timers(self, now: float) -> None:
        """Enforce the timeouts (the server's sweeper calls this about every tick)."""
        limits = self.limits
        if self.closed:
            return
        if not self.settings_seen:
            if now - self.opened > limits.handshake_timeout:
                self._fail(H2Error.PROTOCOL_ERROR, "no client preface and SETTINGS in time")
            return
        if self.paused & _WRITES and now - self.write_paused_at > limits.stall_timeout:
            log.info("closing HTTP/2 connection from %s: it reads nothing we send", self.peer)
            self.closed = True
            self.abort()
            return
        if self.streams or self.last_stream_id != self.idle_mark:  # a stream open, or one since the last sweep
            self.idle_since = now
            self.idle_mark = self.last_stream_id
        if not self.streams:
            idle = now - self.idle_since
            if self.continuation is not None and idle > limits.stall_timeout:
                self._fail(H2Error.ENHANCE_YOUR_CALM, "header block not finished in time")
            elif idle > limits.idle_timeout:
                log.info("closing HTTP/2 connection from %s: idle", self.peer)
                self.go_away()
            return
        stall = limits.stall_timeout
        for stream in [s for s in self.streams.values() if now - s.stamp > stall]:
            if stream.pending or (not stream.ended and (stream.inbox is None or stream.body)):
                log.info("gRPC: resetting stalled stream %d from %s", stream.id, self.peer)
                self._reset(stream, H2Error.CANCEL)
        self._flush()

    # -- what a request means: the subclass's part ----------------------------------------------

    def header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        """A complete header block arrived (HEADERS plus any CONTINUATION)."""
        raise NotImplementedError

    def request_data(self, stream: Stream, payload: bytes, length: int, end_stream: bool) -> None:
        """Request bytes for an open stream (padding removed; ``length`` is what the frame counted for flow control)."""
        raise NotImplementedError
