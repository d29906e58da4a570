"""A small, fast gRPC server: HTTP/2 framing on an asyncio protocol, HPACK from the ``hpack`` package.

Why not grpcio's server: on the 2-core benchmark machine grpcio's Python server costs 0.13-0.23 ms
of CPU per call before a handler runs, and a server on the ``h2`` state machine about 0.15 ms; this
package costs 12-19 µs (``bench/grpc_frontends.py`` measures all three with a constant handler). It
implements the part of HTTP/2 (RFC 9113) that gRPC over cleartext HTTP/2 uses, and no more:

* prior-knowledge h2c (the client preface, SETTINGS both ways, PING, GOAWAY, RST_STREAM,
  WINDOW_UPDATE, CONTINUATION, padding and priority fields, unknown frames ignored);
* flow control both ways: receive windows are large, refilled as unary requests arrive and as
  streaming handlers take their messages (a per-connection budget caps what waits); responses
  respect the peer's stream and connection windows and its SETTINGS_MAX_FRAME_SIZE, and wait
  for WINDOW_UPDATE when a window is empty;
* the gRPC protocol (``PROTOCOL-HTTP2.md``): length-prefixed messages, ``grpc-status`` and
  percent-encoded ``grpc-message`` in trailers (or Trailers-Only when nothing was sent),
  ``grpc-timeout`` deadlines, gzip/deflate request compression, 415 for a non-gRPC content type;
* unary, server-streaming and bidirectional-streaming methods; a unary handler may answer
  synchronously (no task is created: the hot path) or return an awaitable;
* limits (:class:`Limits`): concurrent streams per connection, connections per server, bytes held
  per connection and per server, rates of control frames and resets, CONTINUATION frames per
  header block, handshake/idle/stall timeouts, header list and message size, strict header
  checks (RFC 9113 section 8.2); reading stops while the send buffer is full; a peer that breaks
  the protocol gets GOAWAY and is disconnected, never a crashed worker;
* graceful stop: no new connections, GOAWAY to every peer, in-flight calls finish within the
  grace period.

Not implemented (nothing in gRPC over h2c needs them): TLS/ALPN (terminate TLS in front),
server push, HTTP/1.1 upgrade, response compression.

Layout, each module importing only those before it: :mod:`.frames` (HTTP/2 constants and
framing), :mod:`.guards` (rate budgets, the server's byte account), :mod:`.messages` (gRPC
statuses, handlers, limits, request heads, message framing), :mod:`.streams` (a connection's
streams: the peer's windows, frames out), :mod:`.connection` (an HTTP/2 connection: frames in,
budgets, backpressure, timeouts), :mod:`.calls` (gRPC calls on a connection),
:mod:`.server` (listening, graceful stop, timeouts). It imports nothing from the rest of Ladle.
"""

from ladle.server.h2grpc.messages import (
    BidiHandler,
    CallContext,
    GrpcError,
    Limits,
    Method,
    ServerStreamHandler,
    Status,
    UnaryHandler,
)
from ladle.server.h2grpc.server import H2GrpcServer

__all__ = [
    "BidiHandler",
    "CallContext",
    "GrpcError",
    "H2GrpcServer",
    "Limits",
    "Method",
    "ServerStreamHandler",
    "Status",
    "UnaryHandler",
]
