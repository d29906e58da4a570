"""The listening side: connections, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Mapping
from ssl import SSLContext

from ladle.server.h2grpc.calls import GrpcConnection
from ladle.server.h2grpc.connection import Http2Connection
from ladle.server.h2grpc.guards import Pool
from ladle.server.h2grpc.messages import HeaderBlocks, Limits, Method

log = logging.getLogger(__package__)
TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS client gets to finish its handshake."""


class H2GrpcServer:
    """Serves ``methods`` (``"/package.Service/Method"`` → :class:`Method`) over h2c."""

    def __init__(self, methods: Mapping[str, Method], limits: Limits | None = None) -> None:
        self.methods = dict(methods)
        self.limits = limits or Limits()
        self.pool = Pool(self.limits.max_worker_buffered_bytes)
        self.blocks = HeaderBlocks()
        self.connections: set[Http2Connection] = set()
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._sweeper: asyncio.Task[None] | None = None

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

    async def start(self, sock: socket.socket, *, ssl: SSLContext | None = None) -> int:
        """Serve on a bound socket (listening or not), over TLS with ``ssl`` (ALPN ``h2``); returns its port."""
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GrpcConnection(self),
            sock=sock,
            backlog=2048,
            ssl=ssl,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if ssl is not None else None,
        )
        self._sweeper = loop.create_task(self._sweep())
        return int(sock.getsockname()[1])

    @property
    def tick(self) -> float:
        """Seconds between two sweeps: a quarter of the shortest timeout, within 0.05-1 s."""
        limits = self.limits
        shortest = min(limits.handshake_timeout, limits.idle_timeout, limits.stall_timeout)
        return max(0.05, min(1.0, shortest / 4))

    async def _sweep(self) -> None:
        """Keep the pool's clock current and enforce every connection's timeouts."""
        tick = self.tick
        while True:
            await asyncio.sleep(tick)
            now = self.pool.now = time.monotonic()
            for connection in list(self.connections):
                try:
                    connection.check_timers(now)
                except Exception:  # one broken connection must not stop the timeouts of the others
                    log.exception("gRPC: checking the timeouts of a connection failed")
                    connection.abort()

    async def stop(self, grace: float) -> None:
        """Refuse new connections and streams; let running calls finish within ``grace`` seconds."""
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
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
