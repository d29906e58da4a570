"""I/O against one Redis server: pre-framed RESP on a small pool of redis-py connections.

Hot paths skip redis-py's per-argument command packing and its pool bookkeeping: reads send one
``MGET`` built in one pass, writes send script calls whose arguments were framed by Arrow kernels
(:func:`.resp.resp_bulk`) as contiguous slices. Replies are parsed by hiredis through redis-py.

Failure handling lives in :meth:`SingleNode.run`: a connection error discards every idle connection
(after a server restart they are all dead) and the operation is retried once on a fresh one, which
is how a long-lived client recovers from a restart without a process restart; a second failure, or
a timeout, is a :class:`~ladle.errors.BackendUnavailableError` naming the address. NOSCRIPT loads the
upsert script and retries. Every operation sent here is idempotent, so a retry is always safe.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.connection import Connection, SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ladle.errors import BackendError, BackendUnavailableError
from ladle.online.redis.conn import RedisEndpoint, unavailable
from ladle.online.redis.resp import resp_command, resp_row_keys
from ladle.online.redis.scripts import UPSERT_LUA
from ladle.online.redis.upsert import Upsert
from ladle.online.redis.write import WriteRows

T = TypeVar("T")
# redis-py's connection methods are untyped; this is the boundary where that stops.
Conn = Any
_MGET_KEYS = 4096  # keys per MGET; several MGETs still share one round trip


@dataclass(frozen=True)
class IOSettings:
    """Connection knobs shared by the single-node and cluster clients."""

    socket_timeout: float
    connect_timeout: float
    max_connections: int
    chunk_rows: int
    ttl_ms: int


class SingleNode:
    """One Redis server (``redis_type: redis``)."""

    def __init__(self, endpoint: RedisEndpoint, settings: IOSettings) -> None:
        ((host, port),) = endpoint.nodes
        self.address = endpoint.address
        self.settings = settings
        self._kwargs: dict[str, Any] = {
            "host": host,
            "port": port,
            "socket_timeout": settings.socket_timeout,
            "socket_connect_timeout": settings.connect_timeout,
            "socket_keepalive": True,
            **endpoint.client_options(),
        }
        self._connection_class = SSLConnection if endpoint.ssl else Connection
        self._idle: deque[Conn] = deque()
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._pid = os.getpid()
        self._script_loaded = False
        # (project, view id) → whether its last large write was mostly new keys (skip the MSETNX probe)
        self._fast_views: dict[tuple[str, bytes], bool] = {}

    # -- connections -------------------------------------------------------------------------

    def _acquire(self) -> Conn:
        if os.getpid() != self._pid:  # forked: the parent's sockets are not ours to use (or to close)
            self._pid, self._idle = os.getpid(), deque()
            self._slots = threading.BoundedSemaphore(self.settings.max_connections)
        if not self._slots.acquire(timeout=self.settings.socket_timeout):
            raise BackendUnavailableError(
                f"Redis at {self.address}: all {self.settings.max_connections} connections are busy"
            )
        try:
            return self._idle.pop()
        except IndexError:
            conn: Conn = self._connection_class(**self._kwargs)
            return conn

    def _release(self, conn: Conn, healthy: bool) -> None:
        if healthy:
            self._idle.append(conn)
        else:
            conn.disconnect()
        self._slots.release()

    def _drain(self) -> None:
        while True:
            try:
                self._idle.pop().disconnect()
            except IndexError:
                return

    def run(self, operation: Callable[[Conn], T]) -> T:
        """Run ``operation`` on a pooled connection with the retry rules of this module."""
        for attempt in range(3):
            conn = self._acquire()
            healthy, load_script = False, False
            try:
                result = operation(conn)
                healthy = True
                return result
            except NoScriptError:
                load_script = True
            except RedisTimeoutError as exc:
                raise BackendUnavailableError(f"Redis at {self.address} timed out: {exc}") from exc
            except (RedisConnectionError, OSError) as exc:
                self._drain()
                if attempt > 0:
                    raise unavailable(f"Redis at {self.address}", exc) from exc
            except ResponseError as exc:
                raise BackendError(f"Redis at {self.address} refused a command: {exc}") from exc
            finally:
                self._release(conn, healthy)
            if load_script:
                self.execute("SCRIPT", "LOAD", UPSERT_LUA)
        raise BackendUnavailableError(f"Redis at {self.address} is unavailable (retries exhausted)")

    # -- operations --------------------------------------------------------------------------

    def execute(self, *args: Any) -> Any:
        """One command, through redis-py's packer (admin paths)."""

        def call(conn: Conn) -> Any:
            conn.send_command(*args)
            return conn.read_response()

        return self.run(call)

    def read_rows(self, project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[bytes | None]:
        """Stored rows of ``(view id, entities)`` groups, in order (``None`` when absent).

        One round trip: one MGET, or several of at most 4096 keys pipelined for huge requests.
        """
        commands: list[bytes] = []
        bodies: list[bytes] = []
        count = 0
        for vid, entities in groups:
            for start in range(0, len(entities), _MGET_KEYS):
                part = entities[start : start + _MGET_KEYS]
                if count + len(part) > _MGET_KEYS:
                    commands.append(b"*%d\r\n$4\r\nMGET\r\n%b" % (count + 1, b"".join(bodies)))
                    bodies, count = [], 0
                bodies.append(resp_row_keys(project, vid, part))
                count += len(part)
        if count:
            commands.append(b"*%d\r\n$4\r\nMGET\r\n%b" % (count + 1, b"".join(bodies)))
        if not commands:
            return []

        def call(conn: Conn) -> list[bytes | None]:
            conn.send_packed_command(commands, check_health=False)
            if len(commands) == 1:
                reply: list[bytes | None] = conn.read_response()
                return reply
            out: list[bytes | None] = []
            for _ in commands:
                out += conn.read_response()
            return out

        return self.run(call)

    def upsert(self, rows: WriteRows) -> int:
        """Write ``rows`` newest-event-wins (see :mod:`.upsert`); return how many were written."""
        if not self._script_loaded:  # spares the first large write a NOSCRIPT retry
            self.execute("SCRIPT", "LOAD", UPSERT_LUA)
            self._script_loaded = True
        view = (rows.project, rows.vid)

        def call(conn: Conn) -> int:
            upsert = Upsert(conn, self.settings.chunk_rows, self.settings.ttl_ms, self._fast_views.get(view, False))
            upsert.run(rows)
            if upsert.tried:
                self._fast_views[view] = upsert.went_fast
            return rows.written

        return self.run(call)

    def scan_unlink(
        self, pattern: bytes, count: int, select: Callable[[bytes], bool] | None = None, dry_run: bool = False
    ) -> int:
        """Delete every key matching ``pattern`` (and ``select``, if given) with incremental SCAN + UNLINK;
        return how many (``dry_run``: only count them)."""

        def call(conn: Conn) -> int:
            cursor, deleted = b"0", 0
            while True:
                conn.send_command("SCAN", cursor, "MATCH", pattern, "COUNT", count)
                cursor, keys = conn.read_response()
                if select is not None:
                    keys = [k for k in keys if select(k)]
                if keys and dry_run:
                    deleted += len(keys)
                elif keys:
                    conn.send_packed_command([resp_command(b"UNLINK", *keys)], check_health=False)
                    deleted += int(conn.read_response())
                if cursor in (b"0", 0):
                    return deleted

        return self.run(call)

    def ping(self) -> None:
        """Raise BackendUnavailableError unless the server answers PING."""
        self.execute("PING")

    def close(self) -> None:
        """Close idle connections (busy ones close when released)."""
        self._drain()
