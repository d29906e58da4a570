"""The streams of one HTTP/2 connection: their state, the peer's windows, and DATA going out within them.

:class:`StreamSet` is the half of a connection that sends: it keeps the peer's stream and
connection windows (SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_UPDATE), sends DATA within them and
holds the rest (counted against the connection's and the server's byte budgets), ends and
resets streams. :class:`.connection.Http2Connection` adds the reading half.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from ladle.server.h2grpc.frames import (
    ACK,
    CONTINUATION,
    DATA,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    MAX_WINDOW,
    RECV_WINDOW,
    RST_STREAM,
    SETTING_ENABLE_PUSH,
    SETTING_HEADER_TABLE_SIZE,
    SETTING_INITIAL_WINDOW_SIZE,
    SETTING_MAX_FRAME_SIZE,
    SETTINGS,
    U16U32,
    U32,
    WINDOW_UPDATE,
    H2ConnectionError,
    H2Error,
    frame,
)  # fmt: skip
from ladle.server.h2grpc.guards import Pool

if TYPE_CHECKING:
    from ladle.server.h2grpc.messages import CallContext, Limits, Method


class StreamOwner(Protocol):
    """What the streams of a connection need from the server."""

    @property
    def limits(self) -> Limits:
        """The server's limits."""
        ...

    @property
    def pool(self) -> Pool:
        """Bytes held over all connections, and the coarse clock."""
        ...

    def stream_finished(self, count: int = 1) -> None:
        """``count`` streams ended (graceful stop waits for none to be left)."""
        ...


class Stream:
    """One call: request bytes in, response frames out."""

    __slots__ = (
        "body", "context", "deadline", "done", "encoding", "ended", "headers_sent", "held", "id", "inbox",
        "method", "pending", "pending_end", "recv_credit", "send_window", "stamp", "task",
    )  # fmt: skip

    def __init__(self, stream_id: int, send_window: int, now: float) -> None:
        self.id = stream_id
        self.stamp = now  # opened, or last progress (a bidi message in, blocked response data out)
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


class StreamSet(asyncio.Protocol):
    """The streams of one connection and what goes out on them (the sending half of a connection)."""

    # Slots, here and in the subclasses: attribute reads on the hot path stay specialized (an
    # instance dict of over 30 keys stops sharing its keys, and every ``self.x`` gets slower).
    __slots__ = (
        "blocked", "buffered", "closed", "going_away", "idle_since", "last_stream_id", "limits", "out",
        "peer_initial_window",
        "peer_max_frame", "pool", "send_window", "server", "streams", "transport", "window_opened",
    )  # fmt: skip

    def __init__(self, server: StreamOwner) -> None:
        self.server = server
        self.limits = server.limits
        self.pool = server.pool
        self.idle_since = self.pool.now  # the last sweep that saw the connection in use
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        self.last_stream_id = 0
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = 1 << 14
        self.send_window = DEFAULT_WINDOW
        self.buffered = 0  # request bytes waiting and response bytes blocked (Limits.max_buffered_bytes)
        self.going_away = False
        self.closed = False
        self.blocked: dict[int, Stream] = {}  # streams with DATA waiting for window
        self.window_opened = asyncio.Event()  # set whenever blocked DATA may have moved
        self.out: list[bytes] = []  # frames produced while parsing one read, written together

    def _spend_control(self, cost: int = 1) -> None:
        """A frame that costs work without moving a call along (the reading half counts them)."""

    def _spend_reset(self) -> None:
        """A stream refused or reset for the peer's fault (the reading half counts them)."""

    def _on_settings(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id:
            raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "malformed SETTINGS")
        initial_window = None
        for offset in range(0, len(payload), 6):
            key, value = U16U32.unpack_from(payload, offset)
            if key == SETTING_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise H2ConnectionError(H2Error.FLOW_CONTROL_ERROR, "initial window over 2^31-1")
                initial_window = value  # only the last one counts: applied once, below
            elif key == SETTING_MAX_FRAME_SIZE:
                if not (1 << 14) <= value <= (1 << 24) - 1:
                    raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.peer_max_frame = value
            elif key == SETTING_HEADER_TABLE_SIZE:
                pass  # our responses never use the dynamic table
            elif key == SETTING_ENABLE_PUSH and value > 1:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
        if initial_window is not None and initial_window != self.peer_initial_window:
            delta = initial_window - self.peer_initial_window
            self.peer_initial_window = initial_window
            for stream in self.streams.values():
                stream.send_window += delta
                if stream.send_window > MAX_WINDOW:
                    raise H2ConnectionError(H2Error.FLOW_CONTROL_ERROR, "a stream window over 2^31-1")
        self.out.append(frame(SETTINGS, ACK, 0))
        self._drain_blocked()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "malformed WINDOW_UPDATE")
        increment = U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise H2ConnectionError(H2Error.FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                self._spend_control()  # a closed stream: allowed, but it does nothing
                return
            if not increment:
                self._spend_reset()
                self._reset(stream, H2Error.PROTOCOL_ERROR)
                return
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                self._spend_reset()
                self._reset(stream, H2Error.FLOW_CONTROL_ERROR)
                return
        self._drain_blocked()

    def _stream_credit(self, stream: Stream, length: int) -> None:
        """Give the peer ``length`` bytes of stream window back (in batches of half the window)."""
        stream.recv_credit += length
        if stream.recv_credit >= RECV_WINDOW // 2 and not stream.ended and not stream.done:
            self.out.append(frame(WINDOW_UPDATE, 0, stream.id, U32.pack(stream.recv_credit)))
            stream.recv_credit = 0

    def _release(self, stream: Stream, size: int | None = None) -> None:
        """``size`` bytes (all, if None) of ``stream``'s request are no longer held for its handler."""
        size = stream.held if size is None else min(size, stream.held)
        stream.held -= size
        self.buffered -= size
        self.pool.held -= size

    def _set_pending(self, stream: Stream, data: bytearray) -> None:
        """``data`` is what of ``stream``'s response waits for window now (counted in the bytes held)."""
        delta = len(data) - len(stream.pending)
        stream.pending = data
        self.buffered += delta
        self.pool.held += delta

    def _free(self, stream: Stream) -> None:
        """Give back every byte ``stream`` holds (request and blocked response)."""
        if stream.held:
            self._release(stream)
        if stream.pending:
            self._set_pending(stream, bytearray())

    def over_budget(self, more: int = 0) -> bool:
        """Whether holding ``more`` bytes would take this connection or the server over its budget."""
        pool = self.pool
        return self.buffered + more > self.limits.max_buffered_bytes or pool.held + more > pool.limit

    def _send_data(self, stream: Stream, data: bytes | bytearray) -> None:
        """DATA frames within the windows; the rest waits in ``stream.pending``."""
        view = memoryview(data)
        sid = stream.id
        frame_limit = self.peer_max_frame
        while view:
            room = min(len(view), stream.send_window, self.send_window, frame_limit)
            if room <= 0:
                if self.over_budget(len(view)):
                    # Holding the rest would go over the byte budget: the peer does not get it.
                    # (gRPC clients read RST_STREAM ENHANCE_YOUR_CALM as RESOURCE_EXHAUSTED.)
                    self._reset(stream, H2Error.ENHANCE_YOUR_CALM)
                    return
                self._set_pending(stream, bytearray(view))
                stream.stamp = self.pool.now
                self.blocked[sid] = stream
                return
            self.out.append(frame(DATA, 0, sid, bytes(view[:room])))
            stream.send_window -= room
            self.send_window -= room
            view = view[room:]

    def _end(self, stream: Stream, trailers: bytes) -> None:
        if stream.done:
            return
        if stream.pending:
            stream.pending_end = trailers
            return
        self._headers(stream.id, END_STREAM, trailers)
        self._close_stream(stream)

    def _headers(self, stream_id: int, flags: int, block: bytes) -> None:
        """A header block as HEADERS, plus CONTINUATION frames if it is over the peer's frame size."""
        limit = self.peer_max_frame
        if len(block) <= limit:
            self.out.append(frame(HEADERS, flags | END_HEADERS, stream_id, block))
            return
        self.out.append(frame(HEADERS, flags, stream_id, block[:limit]))
        for start in range(limit, len(block), limit):
            last = start + limit >= len(block)
            self.out.append(frame(CONTINUATION, END_HEADERS if last else 0, stream_id, block[start : start + limit]))

    def _close_stream(self, stream: Stream) -> None:
        stream.done = True
        if stream.held:
            self._release(stream)
        if stream.pending:
            self._set_pending(stream, bytearray())
        if not stream.ended:
            # We answered before the request ended (an error): the rest of it is not wanted.
            self.out.append(frame(RST_STREAM, 0, stream.id, U32.pack(H2Error.NO_ERROR)))
        if self.streams.pop(stream.id, None) is not None:
            self.server.stream_finished()
        self.blocked.pop(stream.id, None)
        self._close_if_idle()

    def _reset(self, stream: Stream, code: H2Error) -> None:
        self.out.append(frame(RST_STREAM, 0, stream.id, U32.pack(code)))
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
            self._set_pending(stream, bytearray())
            stream.stamp = self.pool.now  # it moved
            self._send_data(stream, pending)
            if not stream.pending and stream.pending_end is not None:
                trailers, stream.pending_end = stream.pending_end, None
                self._end(stream, trailers)

    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def _close_if_idle(self) -> None:
        if self.going_away and not self.streams and self.transport is not None:
            self._flush()
            self.closed = True
            self.transport.close()
