"""REST connections with limits: uvicorn's httptools protocol, bounded (docs/security.md, "REST server limits").

uvicorn bounds none of this with httptools, so :class:`LimitedHttpProtocol` subclasses its protocol:

* **Request head** (target + header names and values) at most ``rest_max_header_bytes`` and
  ``rest_max_headers`` lines, else 431 and close. Bytes read while a head is still incomplete count
  too, so a head sent in pieces (or one endless header) is cut off as soon as it passes the limit.
* **Partial requests**: a request's head and body must arrive within ``rest_request_timeout`` of its
  first byte, and a new connection must start its first request within the same time; else 408
  (or a plain close if nothing was sent) — slowloris. One sweep per worker checks every connection.
* **Pipelining**: reading stops while any request waits behind the running one; a single read that
  carries more than ``rest_max_pipelined`` of them is answered up to there and the connection closed.
* **Connections**: at most ``rest_max_connections`` per worker, TLS handshakes included. At the cap a
  new connection displaces the one that has waited longest (at least :data:`STALL_GRACE` seconds) for
  a request's bytes or a handshake, or sits idle between requests; if none has, it is closed at once.
  A connection none of whose bytes were read yet keeps its place for :data:`FIRST_REQUEST_GRACE`.
* **Slow readers**: a connection whose response has waited ``rest_write_timeout`` seconds for a
  client that reads nothing (writes paused by flow control all that time) is closed, its buffered
  response freed; the same sweep checks it.
* **TLS**: the handshake runs under this module (asyncio's ``SSLProtocol`` over the accepted
  connection), so it counts against the cap and is bounded by the request timeout.

The hot path (one complete request per read) adds a few attribute checks to uvicorn's code.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from asyncio.sslproto import SSLProtocol
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ladle.server.settings import ServerSettings

log = logging.getLogger(__name__)
STALL_GRACE = 0.005
"""Seconds a connection must have been stalled before a new one may displace it at the cap."""
FIRST_REQUEST_GRACE = 0.05
"""Seconds a new connection keeps its place before its first bytes are read: under a flood of
connections the event loop may accept a whole backlog before it reads a client's request that
arrived with its connection, and that client must not lose its place to the flood meanwhile."""
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class RestLimits:
    """The REST limits of one worker."""

    max_header_bytes: int = 32768
    max_headers: int = 100
    request_timeout: float = 15.0
    max_pipelined: int = 16
    max_connections: int = 1000
    write_timeout: float = 30.0
    tls: ssl.SSLContext | None = None

    @classmethod
    def of(cls, settings: ServerSettings, fd_limit: int | None, tls: ssl.SSLContext | None = None) -> RestLimits:
        """The limits ``settings`` give, the connection cap held to a quarter of ``fd_limit``."""
        cap = settings.rest_max_connections
        if fd_limit is not None and cap > fd_limit // 4:
            lowered = max(1, fd_limit // 4)
            message = "REST: rest_max_connections %d lowered to %d, a quarter of the fd limit %d"
            log.warning(message, cap, lowered, fd_limit)
            cap = lowered
        return cls(
            max_header_bytes=settings.rest_max_header_bytes,
            max_headers=settings.rest_max_headers,
            request_timeout=settings.rest_request_timeout,
            max_pipelined=settings.rest_max_pipelined,
            max_connections=cap,
            write_timeout=settings.rest_write_timeout,
            tls=tls,
        )


# uvicorn's callback, called directly (cheaper than super() on the per-request path).
_headers_complete = HttpToolsProtocol.on_headers_complete
NOTHING, FIRST, HEAD, BODY = range(4)
"""What a connection waits for: nothing (busy or idle), its first request, the rest of a head or of a body."""


class _Stop(Exception):
    """Raised inside a parser callback to stop parsing this connection's bytes."""


class _Flow(FlowControl):
    """uvicorn's flow control, except that reading stays paused while requests are queued."""

    def __init__(self, transport: asyncio.Transport, protocol: LimitedHttpProtocol) -> None:
        super().__init__(transport)
        self._protocol = protocol
        self._pipeline = protocol.pipeline
        self.write_paused_at = 0.0

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused_at = self._protocol.loop.time()
        super().pause_writing()

    def resume_reading(self) -> None:
        if self.read_paused and not self._pipeline and not self._protocol.overflowed:
            self.read_paused = False
            self._transport.resume_reading()


class ConnectionGuard:
    """One worker's REST connections: the cap, displacement at the cap, and the timeout sweep."""

    def __init__(self, limits: RestLimits) -> None:
        self.limits = limits
        self.connections: set[Any] | None = None  # uvicorn's server_state.connections, bound by the first one
        self.handshaking: dict[_TlsFront, float] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def admit(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a new connection may stay (displacing a stalled one at the cap)."""
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(loop))
        connections = self.connections or ()
        if len(connections) + len(self.handshaking) < self.limits.max_connections:
            return True
        victim = self._most_stalled(loop.time())
        if victim is None:
            return False
        victim.displace()
        return True

    def _most_stalled(self, now: float) -> LimitedHttpProtocol | _TlsFront | None:
        best: LimitedHttpProtocol | _TlsFront | None = None
        best_since = now - STALL_GRACE
        for front, since in self.handshaking.items():
            if since <= best_since and not front.closing:
                best, best_since = front, since
        fresh = now - FIRST_REQUEST_GRACE
        for conn in self.connections or ():
            since = conn.stalled_since()
            if since is None or (since > fresh and conn.phase() == FIRST):
                continue
            if since <= best_since:
                best, best_since = conn, since
        return best

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        timeout = self.limits.request_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4, self.limits.write_timeout / 4))
            deadline = loop.time() - timeout
            now = loop.time()
            for conn in list(self.connections or ()):
                if 0.0 < conn.waiting_since < deadline and conn.phase() != NOTHING:
                    conn.time_out()
                elif conn.writes_stalled(now):
                    conn.stop_writing()
            for front, since in list(self.handshaking.items()):
                if since < deadline:  # SSLProtocol has its own timeout too; a backstop
                    front.displace()

    def close(self) -> None:
        """Stop the sweep (the worker is stopping)."""
        if self._sweeper is not None:
            self._sweeper.cancel()


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`RestLimits` (see the module doc)."""

    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        if guard.connections is None:
            guard.connections = self.connections
        limits = guard.limits
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._max_pipelined = limits.max_pipelined
        self._clock = self.loop.time
        # Since when (loop time) the connection waits: connected, first bytes of a head, head complete;
        # whether it still waits is phase(): heads are told apart by uvicorn's per-request headers list.
        self.waiting_since = 0.0
        self.admitted = False
        self.overflowed = False
        self._open_headers: list[tuple[bytes, bytes]] | None = None  # of the head last seen incomplete
        self._done_headers: list[tuple[bytes, bytes]] | None = None  # of the head last completed
        self._head_seen = 0
        self._chunk = 0
        self._stop: tuple[int, str] | None = None

    # -- connection ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.admitted and not self.guard.admit(self.loop):
            transport.abort()
            return
        super().connection_made(transport)
        self.flow = _Flow(transport, self)
        self.waiting_since = self._clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting_since = 0.0
        if self.transport is not None:  # None: refused at the cap
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._chunk = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self._stop is not None:
                self._stopped()
                return
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            return  # no WebSockets here: the request is served as plain HTTP
        headers = self.headers
        if headers is not self._done_headers:  # a head still incomplete after this read: every byte counts
            if headers is not self._open_headers:  # it began in this read
                self._open_headers = headers
                self._head_seen = 0
                self.waiting_since = self._clock()
            self._head_seen += len(data)
            if self._head_seen > self._max_header_bytes or len(headers) > self._max_headers:
                self._stop = (431, f"request head over {self._max_header_bytes} bytes or {self._max_headers} lines")
                self._stopped()

    # -- parser callbacks ------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        headers = self.headers
        seen = self._head_seen if headers is self._open_headers else 0
        self._done_headers = headers
        self.waiting_since = self._clock()  # now for the body, if any
        if (
            len(headers) > self._max_headers
            or seen + self._chunk > self._max_header_bytes
            or len(self.pipeline) >= self._max_pipelined
        ):
            self._check_head()  # raises _Stop if a limit is broken
        _headers_complete(self)

    def _check_head(self) -> None:
        if len(self.headers) > self._max_headers:
            self._stop = (431, f"{len(self.headers)} header lines; at most {self._max_headers} are allowed")
            raise _Stop
        size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
        if size > self._max_header_bytes:
            self._stop = (431, f"request head of {size} bytes; at most {self._max_header_bytes} are allowed")
            raise _Stop
        if len(self.pipeline) >= self._max_pipelined:
            self._stop = (0, "")
            raise _Stop

    def phase(self) -> int:
        """What the connection waits for: :data:`NOTHING`, :data:`FIRST`, :data:`HEAD` or :data:`BODY`."""
        if self.headers is not self._done_headers:
            return HEAD
        cycle = self.cycle
        if cycle is None:
            return FIRST if self.transport is not None else NOTHING
        # more_body stays set if the response went out before the body was in (413): still a body to wait for
        return BODY if cycle.more_body and not self.overflowed else NOTHING

    # -- limits ----------------------------------------------------------------------------------
    def _can_answer(self, own_cycle: bool) -> bool:
        """Whether a response now would be the only one to its request and cut into no other.

        ``own_cycle``: the stuck request already has its cycle (its body is incomplete); else it is a head.
        """
        if self.pipeline:
            return False
        cycle = self.cycle
        if own_cycle:
            return cycle is not None and not cycle.response_started
        return cycle is None or cycle.response_complete

    def _stopped(self) -> None:
        status, message = self._stop or (0, "")
        self.waiting_since = 0.0
        if status == 0:  # too many pipelined requests: answer the queued ones, then close
            self.overflowed = True
            self.flow.pause_reading()
            if self.cycle is not None:
                self.cycle.keep_alive = False
            return
        log.info("REST %s: %d %s", self.client, status, message)
        self._reject(status, message, own_cycle=False)

    def _reject(self, status: int, message: str, *, own_cycle: bool) -> None:
        """Answer ``status`` and close (just close if that would cut into another response)."""
        if not self._can_answer(own_cycle) or self.transport.is_closing():
            self.transport.abort()
            return
        body = orjson.dumps({"detail": message})
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, _REASONS[status], len(body)) + body)
        self.transport.close()
        if self.scheme == "https":  # do not wait the TLS shutdown out for a peer that stopped reading
            self.loop.call_later(1.0, self.transport.abort)

    def stalled_since(self) -> float | None:
        """Since when this connection waits for a request's bytes or sits idle; ``None`` if busy."""
        if self.transport is None or self.transport.is_closing():
            return None
        if self.phase() != NOTHING:
            return self.waiting_since
        keep_alive = self.timeout_keep_alive_task
        if keep_alive is not None:
            return keep_alive.when() - self.timeout_keep_alive
        return None

    def time_out(self) -> None:
        """The request did not arrive in time: 408 if one had started, else just close."""
        phase = self.phase()
        self.waiting_since = 0.0
        if phase in (HEAD, BODY):
            limit = self.guard.limits.request_timeout
            self._reject(408, f"the request did not arrive within {limit:g} seconds", own_cycle=phase == BODY)
        else:
            self.transport.abort()

    def displace(self) -> None:
        """Make room for a new connection at the cap."""
        self.waiting_since = 0.0
        self.transport.abort()

    def writes_stalled(self, now: float) -> bool:
        """Whether a response has waited longer than the write timeout for a client that reads nothing."""
        flow = self.flow
        return (
            isinstance(flow, _Flow)
            and flow.write_paused
            and now - flow.write_paused_at > self.guard.limits.write_timeout
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def stop_writing(self) -> None:
        """Drop a connection whose client stopped reading: its buffered response is freed."""
        log.info("REST %s: closing, the client read nothing for %gs", self.client, self.guard.limits.write_timeout)
        self.transport.abort()


class _TlsFront(asyncio.Protocol):
    """A TLS connection while it handshakes: counted against the cap, displaceable, then the HTTP protocol's.

    The accepted transport is handed at once (no bytes can slip past) to an ``asyncio.sslproto.SSLProtocol``
    whose application protocol is the HTTP one; it calls ``connection_made`` once the handshake is done.
    """

    def __init__(self, http: LimitedHttpProtocol, context: ssl.SSLContext) -> None:
        self.http = http
        self.guard = http.guard
        self.context = context
        self.raw: asyncio.Transport | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport subclasses
        loop = self.http.loop
        if not self.guard.admit(loop):
            raw.abort()
            return
        self.raw = raw
        self.guard.handshaking[self] = loop.time()
        done = loop.create_future()
        done.add_done_callback(self._handshake_done)
        timeout = self.guard.limits.request_timeout
        tls = SSLProtocol(
            loop,
            self.http,
            self.context,
            done,
            server_side=True,
            ssl_handshake_timeout=math.ceil(timeout),  # typeshed: int (seconds)
            ssl_shutdown_timeout=5.0,
        )
        self.http.admitted = True
        raw.set_protocol(tls)
        tls.connection_made(raw)

    def _handshake_done(self, done: asyncio.Future[None]) -> None:
        self.guard.handshaking.pop(self, None)
        if not done.cancelled() and done.exception() is not None:
            log.debug("REST: TLS handshake failed: %s", done.exception())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True  # refused at the cap: the transport never left this protocol

    def displace(self) -> None:
        """Make room for a new connection at the cap (or end a handshake that took too long)."""
        self.closing = True
        self.guard.handshaking.pop(self, None)
        if self.raw is not None:
            self.raw.abort()


class RestProtocolFactory:
    """What uvicorn's ``http=`` gets: builds one limited protocol (behind a TLS front if TLS is on) per connection."""

    def __init__(self, limits: RestLimits) -> None:
        self.limits = limits
        self.guard = ConnectionGuard(limits)

    def __call__(self, *args: Any, **kwargs: Any) -> asyncio.Protocol:
        http = LimitedHttpProtocol(*args, guard=self.guard, **kwargs)
        if self.limits.tls is None:
            return http
        return _TlsFront(http, self.limits.tls)

    def close(self) -> None:
        """Stop the timeout sweep."""
        self.guard.close()
