"""REST limits of ``ladle serve`` (docs/security.md, "REST server limits"), each at its value, on loopback.

Every attack loop is bounded in count and time. The server runs as a subprocess with one worker, so
its memory can be measured and, for the fd test, its file-descriptor limit set.
"""

from __future__ import annotations

import json
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from security.serve_process import Served, fd_limit, make_repo, serve

pytestmark = pytest.mark.slow
HEAD_BYTES, HEADERS, TIMEOUT, PIPELINED, CONNECTIONS, BODY_BYTES = 4096, 20, 2.0, 4, 24, 2000
WRITE_TIMEOUT = 1.0
BODY = {"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["brent"]}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("limits_repo"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Served]:
    flags = ["--rest-max-header-bytes", str(HEAD_BYTES), "--rest-max-headers", str(HEADERS),
             "--rest-request-timeout", str(TIMEOUT), "--rest-max-pipelined", str(PIPELINED),
             "--rest-max-connections", str(CONNECTIONS), "--max-body-bytes", str(BODY_BYTES), "--no-grpc",
             "--rest-write-timeout", str(WRITE_TIMEOUT)]  # fmt: skip
    with serve(repo, *flags) as served:
        yield served


def connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_closed(conn: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not in ``timeout``)."""
    conn.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def responses(data: bytes) -> list[int]:
    return [int(line.split()[1]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def request(path: str = "/health", headers: str = "", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()


def read_responses(conn: socket.socket, count: int) -> list[int]:
    """The statuses of ``count`` bodiless responses (several may arrive in one read when pipelined)."""
    data = b""
    while data.count(b"\r\n\r\n") < count:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {data.count(b'HTTP/1.1 ')} of {count} responses"
        data += chunk
    assert b"content-length: 0" in data.split(b"\r\n\r\n")[0].lower()
    return responses(data)


def one_response(conn: socket.socket) -> int:
    """The status of one response read from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(v for k, v in (h.split(b": ", 1) for h in head.split(b"\r\n")[1:]) if k == b"content-length"))
    while len(rest) < length:
        rest += conn.recv(65536)
    return int(head.split()[1])


def test_header_bytes_at_the_limit(server: Served) -> None:
    # Target + header names and values count; "/health" + "host" + "x" + "x-pad" + value.
    fixed = len("/health") + len("host") + len("x") + len("x-pad")
    with connect(server.rest_port) as conn:
        conn.sendall(request(headers=f"X-Pad: {'a' * (HEAD_BYTES - fixed)}\r\n"))
        assert one_response(conn) == 200
    with connect(server.rest_port) as conn:
        conn.sendall(request(headers=f"X-Pad: {'a' * (HEAD_BYTES - fixed + 1)}\r\n"))
        reply = read_until_closed(conn)
    assert responses(reply) == [431], reply
    assert b"4096" in reply


def test_a_head_sent_in_pieces_is_cut_off_before_it_completes(server: Served) -> None:
    with connect(server.rest_port) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        try:
            for _ in range(64):  # up to 4x the limit, in 256-byte reads, never finishing the header
                conn.sendall(b"a" * 256)
                sent += 256
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_until_closed(conn)
    assert responses(reply) == [431], reply


def test_header_count_at_the_limit(server: Served) -> None:
    extra = HEADERS - 1  # plus Host
    with connect(server.rest_port) as conn:
        conn.sendall(request(headers="".join(f"X-H{i}: v\r\n" for i in range(extra))))
        assert one_response(conn) == 200
        conn.sendall(request(headers="".join(f"X-H{i}: v\r\n" for i in range(extra + 1))))
        reply = read_until_closed(conn)
    assert responses(reply) == [431], reply


def test_partial_head_and_partial_body_time_out(server: Served) -> None:
    started = time.monotonic()
    with connect(server.rest_port) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        reply = read_until_closed(conn)
    assert responses(reply) == [408], reply
    assert TIMEOUT - 0.1 <= time.monotonic() - started < TIMEOUT + 8
    with connect(server.rest_port) as conn:
        conn.sendall(b"POST /get-online-features HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        reply = read_until_closed(conn)
    assert responses(reply) == [408], reply


def test_a_silent_connection_is_closed_without_a_response(server: Served) -> None:
    started = time.monotonic()
    with connect(server.rest_port) as conn:
        assert read_until_closed(conn) == b""
    assert TIMEOUT - 0.1 <= time.monotonic() - started < TIMEOUT + 8


def test_a_slow_but_steady_request_is_still_bounded(server: Served) -> None:
    """Bytes trickling in do not reset the clock: the whole request must arrive in time."""
    started = time.monotonic()
    with connect(server.rest_port) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        try:
            for _ in range(int(TIMEOUT * 10) + 30):  # one byte every 0.1 s, up to TIMEOUT + 3 s
                conn.sendall(b"a")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_until_closed(conn)
    assert responses(reply) == [408], reply
    assert time.monotonic() - started < TIMEOUT + 8


def test_pipelined_requests_up_to_the_bound_are_answered(server: Served) -> None:
    with connect(server.rest_port) as conn:
        conn.sendall(request() * (PIPELINED + 1))  # one running + PIPELINED queued, in one write
        assert read_responses(conn, PIPELINED + 1) == [200] * (PIPELINED + 1)
        conn.sendall(request())  # the connection is still good
        assert one_response(conn) == 200


def test_more_pipelined_requests_close_the_connection_after_the_bound(server: Served) -> None:
    with connect(server.rest_port) as conn:
        conn.sendall(request() * 2000)  # ~50 kB of requests in one burst
        reply = read_until_closed(conn)
    statuses = responses(reply)
    assert 1 <= len(statuses) <= PIPELINED + 1 and set(statuses) == {200}, statuses
    assert b"connection: close" in reply


def test_a_client_that_reads_nothing_is_dropped_after_the_write_timeout(server: Served) -> None:
    """A large answer to a client that never reads is not held: the connection is closed, the answer freed."""
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, so the server's writes pause
    conn.connect(("127.0.0.1", server.rest_port))
    with conn:
        # PIPELINED answers of about 1.5 MB each: more than the kernel's socket buffers take
        conn.sendall(request("/docs/swagger-ui-bundle.js") * PIPELINED)
        time.sleep(WRITE_TIMEOUT + 2.5)  # the sweep runs every WRITE_TIMEOUT / 4
        received = read_until_closed(conn)
    head = received.partition(b"\r\n\r\n")[0]
    length = int(next(line.split(b": ")[1] for line in head.split(b"\r\n") if line.startswith(b"content-length")))
    assert length > 1_000_000 and len(received) < PIPELINED * length, (length, len(received))


def test_body_limit(server: Served) -> None:
    with connect(server.rest_port) as conn:
        body = json.dumps({**BODY, "pad": "a" * BODY_BYTES}).encode()
        conn.sendall(request("/get-online-features", f"Content-Length: {len(body)}\r\n", "POST") + body)
        assert one_response(conn) == 413


def test_a_body_left_unfinished_after_its_413_gets_no_second_response(server: Served) -> None:
    with connect(server.rest_port) as conn:
        conn.sendall(request("/get-online-features", f"Content-Length: {BODY_BYTES * 4}\r\n", "POST") + b"{")
        reply = read_until_closed(conn)  # 413 at once, then a plain close when the timeout hits
    assert responses(reply) == [413], reply


def _alive(conn: socket.socket) -> bool:
    try:
        conn.sendall(request())
        return one_response(conn) == 200
    except (OSError, AssertionError):
        return False


def _closed_now(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        return conn.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        conn.setblocking(True)


def test_connection_cap(server: Served) -> None:
    conns = [connect(server.rest_port) for _ in range(CONNECTIONS + 1)]
    try:
        time.sleep(0.3)
        # Either the last one was refused at once or (after STALL_GRACE) displaced the oldest: never more.
        assert sum(_alive(c) for c in conns) == CONNECTIONS
    finally:
        for c in conns:
            c.close()


def test_at_the_cap_a_new_client_displaces_the_longest_stalled_connection(server: Served) -> None:
    time.sleep(0.5)  # the connections of the test before are gone
    stalled = [connect(server.rest_port) for _ in range(CONNECTIONS)]
    try:
        for c in stalled:
            c.sendall(b"GET /health HTTP/1.1\r\n")  # partial heads, never finished
            time.sleep(0.02 if c is stalled[0] else 0)  # the first one is the oldest (loop time: ms)
        time.sleep(0.3)  # longer than STALL_GRACE
        with connect(server.rest_port) as conn:
            conn.sendall(request())
            assert one_response(conn) == 200
        time.sleep(0.2)
        closed = [i for i, c in enumerate(stalled) if _closed_now(c)]
        assert closed == [0], closed  # the oldest made room; the others still wait
    finally:
        for c in stalled:
            c.close()


# -- attacks -----------------------------------------------------------------------------------


class Slowloris:
    """Many connections sending partial heads slowly, reconnecting when closed; bounded in time."""

    def __init__(self, port: int, connections: int, *, big: bool = False) -> None:
        self.port, self.connections, self.big = port, connections, big
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Slowloris:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def _open(self, selector: selectors.DefaultSelector) -> None:
        try:
            conn = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return
        conn.setblocking(False)
        self.opened += 1
        try:
            conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + (b"a" * 3000 if self.big else b""))
        except OSError:
            conn.close()
            return
        selector.register(conn, selectors.EVENT_READ)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            while len(selector.get_map()) < self.connections and not self.stop.is_set():
                self._open(selector)
            for key in list(selector.get_map().values()):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    conn.send(b"a")  # one more byte of the endless header
                except OSError:
                    selector.unregister(conn)
                    conn.close()
            for key, _ in selector.select(0.2):  # anything readable: a response or a close; drop it
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                selector.unregister(conn)
                conn.close()
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def test_slowloris_bounded_memory_and_a_fast_client_stays_fast(repo: Path) -> None:
    with serve(repo, "--no-grpc", "--rest-request-timeout", "3") as served, connect(served.rest_port) as client:
        for _ in range(200):  # warm up
            client.sendall(request())
            one_response(client)
        baseline = served.rss_mb()
        latencies: list[float] = []
        peak = baseline
        with Slowloris(served.rest_port, 400, big=True) as attack:
            until = time.monotonic() + 5
            while time.monotonic() < until:
                started = time.perf_counter()
                client.sendall(request())
                assert one_response(client) == 200
                latencies.append(time.perf_counter() - started)
                if len(latencies) % 50 == 0:
                    peak = max(peak, served.rss_mb())
                time.sleep(0.002)
        assert attack.opened >= 400, attack.opened
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert peak - baseline < 64, f"RSS grew {peak - baseline:.1f} MiB under the attack"
    assert p99 < 0.050, f"p99 {p99 * 1000:.1f} ms over {len(latencies)} requests"


def _grpc_health(target: str) -> int:
    """The health status, once the server's first readiness check has set it (NOT_SERVING until then)."""
    deadline = time.monotonic() + 15
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        while True:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            if reply.status == health_pb2.HealthCheckResponse.SERVING or time.monotonic() > deadline:
                return int(reply.status)
            time.sleep(0.2)


def _rest_get(port: int, path: str, attempts: int = 5) -> int:
    for _ in range(attempts):
        try:
            with connect(port, timeout=5) as conn:
                conn.sendall(request(path))
                return one_response(conn)
        except (OSError, AssertionError):
            time.sleep(0.5)
    return 0


def test_a_slowloris_at_the_fd_limit_leaves_rest_and_grpc_answering(repo: Path) -> None:
    """256 fds per process; the REST cap (a quarter: 64) keeps the worker far from them."""
    with serve(repo, "--rest-request-timeout", "5", preexec=fd_limit(256)) as served:
        with Slowloris(served.rest_port, 600) as attack:
            time.sleep(1.5)
            assert _rest_get(served.rest_port, "/ready") == 200
            assert _rest_get(served.rest_port, "/health") == 200
            assert _grpc_health(served.grpc_target) == health_pb2.HealthCheckResponse.SERVING
            assert attack.opened > 64
        assert _rest_get(served.rest_port, "/health") == 200


def test_idle_connections_on_both_ports_at_the_fd_limit(repo: Path) -> None:
    """Idle connections on both ports, more than the worker has fds: both caps keep it answering."""
    with serve(repo, "--rest-request-timeout", "5", preexec=fd_limit(256)) as served:
        held: list[socket.socket] = []
        try:
            for port in (served.grpc_port, served.rest_port):
                for _ in range(300):
                    try:
                        held.append(connect(port, timeout=2))
                    except OSError:
                        break
            time.sleep(1.5)
            assert _rest_get(served.rest_port, "/ready", attempts=2) == 200
            assert _grpc_health(served.grpc_target) == health_pb2.HealthCheckResponse.SERVING
        finally:
            for c in held:
                c.close()
