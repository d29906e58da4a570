"""The gRPC side of a connection: request heads, calls and their handlers, responses and statuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, cast

import hpack

from ladle.server.h2grpc.connection import ConnectionOwner, Http2Connection, log
from ladle.server.h2grpc.frames import (
    END_HEADERS,
    END_STREAM,
    HEADERS,
    RST_STREAM,
    U32,
    H2ConnectionError,
    H2Error,
    frame,
)  # fmt: skip
from ladle.server.h2grpc.messages import (
    INDEXED_BYTES,
    MESSAGE,
    CallContext,
    GrpcError,
    Head,
    HeaderBlocks,
    Method,
    Status,
    malformed_trailers,
    split_messages,
    table_neutral,
)  # fmt: skip
from ladle.server.h2grpc.streams import Stream


class CallHost(ConnectionOwner, Protocol):
    """What a connection serving calls needs from its server, beyond :class:`ConnectionOwner`."""

    @property
    def methods(self) -> Mapping[str, Method]:
        """``"/package.Service/Method"`` → :class:`Method`."""
        ...

    @property
    def blocks(self) -> HeaderBlocks:
        """Response header blocks, shared by the server's connections."""
        ...

    @property
    def stopping(self) -> bool:
        """Whether the server refuses new streams."""
        ...

    def stream_started(self) -> None:
        """A stream began (graceful stop waits for it)."""
        ...


class GrpcConnection(Http2Connection):
    """One client connection: gRPC calls on top of :class:`Http2Connection`."""

    __slots__ = ("blocks", "heads")

    def __init__(self, server: CallHost) -> None:
        super().__init__(server)
        self.server: CallHost = server
        self.blocks = server.blocks
        self.heads: dict[bytes, Head] = {}

    def _decode_head(self, block: bytes) -> Head:
        """The request head a header block describes, cached for blocks that leave the HPACK table alone.

        A block of only indexed fields and literals without indexing (see :func:`.messages.table_neutral`)
        does not change the decoder's dynamic table, so while the table stays the same the same
        bytes mean the same headers. Any other block may change the table, so it empties the
        cache. A client's headers are the same on every call (nghttp2, for one, sends ``:path``
        and ``content-length`` as literals without indexing), so after the first call a head
        costs one dict lookup instead of a decode.
        """
        cacheable = not block.translate(None, INDEXED_BYTES) or table_neutral(block)
        if cacheable:
            head = self.heads.get(block)
            if head is not None:
                return head
        head = Head.parse(self._decode(block), self.server.methods)
        if cacheable:
            if len(self.heads) >= 64:
                self.heads.clear()
            self.heads[block] = head
        else:
            self.heads.clear()
        return head

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return cast(list[tuple[bytes, bytes]], self.decoder.decode(block, raw=True))
        except hpack.OversizedHeaderListError:
            raise H2ConnectionError(H2Error.ENHANCE_YOUR_CALM, "header list over the limit") from None
        except hpack.HPACKError as exc:
            raise H2ConnectionError(H2Error.COMPRESSION_ERROR, f"bad header block: {exc}") from None

    def header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers from the client: only END_STREAM matters
            trailers = self._decode(block)
            if not flags & END_STREAM:
                raise H2ConnectionError(H2Error.PROTOCOL_ERROR, "second HEADERS without END_STREAM")
            if malformed_trailers(trailers) is not None:
                self._spend_reset()
                self._reset(stream, H2Error.PROTOCOL_ERROR)
                return
            self._end_of_request(stream)
            return
        head = self._decode_head(block)
        if stream_id <= self.last_stream_id:
            raise H2ConnectionError(H2Error.STREAM_CLOSED, f"HEADERS on closed stream {stream_id}")
        self.last_stream_id = stream_id
        if head.malformed is not None or len(self.streams) >= self.limits.max_concurrent_streams:
            # A malformed request (RFC 9113 section 8.1.1), or a peer ignoring our
            # SETTINGS_MAX_CONCURRENT_STREAMS: the peer's fault, so it counts as a reset.
            self._spend_reset()
            code = H2Error.PROTOCOL_ERROR if head.malformed is not None else H2Error.REFUSED_STREAM
            self.out.append(frame(RST_STREAM, 0, stream_id, U32.pack(code)))
            return
        pool = self.pool
        if (
            self.going_away
            or self.server.stopping
            or self.buffered >= self.limits.max_buffered_bytes
            or pool.held >= pool.limit
        ):
            self.out.append(frame(RST_STREAM, 0, stream_id, U32.pack(H2Error.REFUSED_STREAM)))
            return
        stream = Stream(stream_id, self.peer_initial_window, self.pool.now)
        self.streams[stream_id] = stream
        self.server.stream_started()
        stream.ended = bool(flags & END_STREAM)
        self._start_call(stream, head)
        if flags & END_STREAM and not stream.done:
            self._end_of_request(stream)

    def _start_call(self, stream: Stream, head: Head) -> None:
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

    def _feed_inbox(self, stream: Stream) -> None:
        assert stream.inbox is not None
        try:
            for item in split_messages(stream.body, stream.encoding, self.limits.max_message_bytes):
                stream.inbox.put_nowait(item)
                stream.stamp = self.pool.now  # a whole message arrived: progress
        except GrpcError as exc:
            self._finish(stream, exc.status, exc.message)

    def _taken(self, stream: Stream, size: int) -> None:
        """A bidi handler took a message of ``size`` wire bytes: release it and credit the window."""
        self._release(stream, size)
        self._stream_credit(stream, size)
        self._flush()

    def _end_of_request(self, stream: Stream) -> None:
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
            limit = self.limits.max_message_bytes
            messages = [message for message, _ in split_messages(stream.body, stream.encoding, limit)]
            if len(messages) != 1 or stream.body:
                raise GrpcError(Status.INTERNAL, f"expected one request message, got {len(messages)}"
                                + (" and a partial one" if stream.body else ""))  # fmt: skip
        except GrpcError as exc:
            self._finish(stream, exc.status, exc.message)
            return
        if stream.held:
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

    async def _with_deadline(self, stream: Stream, work: Awaitable[Any]) -> Any:
        if stream.deadline is None:
            return await work
        return await asyncio.wait_for(work, max(0.0, stream.deadline - time.monotonic()))

    async def _settle(self, stream: Stream, work: Awaitable[Any]) -> tuple[bool, Any]:
        """Await ``work`` within the call's deadline: ``(True, result)``, or end the call with its status."""
        try:
            return True, await self._with_deadline(stream, work)
        except TimeoutError:
            self._finish(stream, Status.DEADLINE_EXCEEDED, "deadline exceeded")
        except GrpcError as exc:
            self._finish(stream, exc.status, exc.message)
        except asyncio.CancelledError:
            pass  # the peer reset the stream or the connection is gone: nothing to answer
        except Exception as exc:
            log.error("%s failed", stream.context.method if stream.context else "?", exc_info=exc)
            self._finish(stream, Status.INTERNAL, str(exc) or type(exc).__name__)
        return False, None

    async def _run_unary(self, stream: Stream, work: Awaitable[bytes]) -> None:
        ok, response = await self._settle(stream, work)
        if ok:
            self._respond(stream, response)
        self._flush()

    async def _run_stream(self, stream: Stream, start: Callable[[], AsyncIterator[bytes]]) -> None:
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

        ok, _ = await self._settle(stream, pump())
        if ok:
            self._finish(stream, Status.OK, "")
        self._flush()

    async def _run_bidi(self, stream: Stream) -> None:
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

    def _respond(self, stream: Stream, message: bytes) -> None:
        """A unary answer: headers, one message and OK trailers, in as few frames as the windows allow."""
        if stream.done:
            return
        self._send_message(stream, message)
        self._end(stream, self.blocks.ok_trailers)

    def _send_message(self, stream: Stream, message: bytes) -> None:
        if not stream.headers_sent:
            stream.headers_sent = True
            extra = stream.context.response_metadata if stream.context is not None else None
            block = self.blocks.ok_headers if not extra else self.blocks.ok_headers_with(extra)
            self.out.append(frame(HEADERS, END_HEADERS, stream.id, block))
        data = MESSAGE.pack(0, len(message)) + message
        if stream.pending or stream.id in self.blocked:
            if self.over_budget(len(data)):
                self._reset(stream, H2Error.ENHANCE_YOUR_CALM)  # the peer reads too slowly for us to hold more
                return
            stream.pending += data
            self.buffered += len(data)
            self.pool.held += len(data)
            return
        self._send_data(stream, data)

    def _finish(self, stream: Stream, status: Status, message: str) -> None:
        """End the call with ``status`` (Trailers-Only if no response headers went out yet)."""
        if stream.done:
            return
        if not stream.headers_sent:
            self._trailers_only(stream, status, message)
            return
        if status != Status.OK:  # an error drops whatever response data is still waiting
            self._set_pending(stream, bytearray())
            self.blocked.pop(stream.id, None)
        self._end(stream, self.blocks.status(status, message, trailers_only=False))

    def _trailers_only(self, stream: Stream, status: Status, message: str, *, http_status: int = 200) -> None:
        stream.headers_sent = True
        block = self.blocks.status(status, message, trailers_only=True, http_status=http_status)
        self._headers(stream.id, END_STREAM, block)
        self._close_stream(stream)

    def request_data(self, stream: Stream, payload: bytes, length: int, end_stream: bool) -> None:
        """Hold request bytes for the handler, within the message limit and the connection's budget."""
        if not stream.done:
            size = len(payload)
            if len(stream.body) + size > self.limits.max_message_bytes + 5 and stream.method is not None:
                self._finish(stream, Status.RESOURCE_EXHAUSTED,
                             f"request over the {self.limits.max_message_bytes}-byte message limit")  # fmt: skip
            elif self.buffered + size > self.limits.max_buffered_bytes or self.pool.held + size > self.pool.limit:
                if self.buffered + size > self.limits.max_buffered_bytes:
                    message = f"over {self.limits.max_buffered_bytes} bytes of requests wait on this connection"
                else:
                    message = "the server holds too many request bytes; try again later"
                self._finish(stream, Status.RESOURCE_EXHAUSTED, message)
            else:
                if stream.inbox is not None and not stream.body:
                    stream.stamp = self.pool.now  # a streamed message begins: it has stall_timeout to arrive
                stream.body += payload
                stream.held += size
                self.buffered += size
                self.pool.held += size
                if not end_stream:
                    if stream.inbox is None:
                        # A unary request must arrive whole anyway: credit it as it comes.
                        self._stream_credit(stream, length)
                    else:
                        # Streamed requests are credited as the handler takes them (backpressure).
                        stream.recv_credit += length - size  # padding is not the handler's to take
                        self._feed_inbox(stream)
        if end_stream:
            self._end_of_request(stream)
