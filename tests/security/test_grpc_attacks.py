"""Attacks on the gRPC server, against both engines: memory, a victim's p99, how the attacker is closed.

Each test drives one attack class of issue #13 at a real ``ladle serve`` subprocess on loopback,
bounded in time and bytes. The assertions: the worker's RSS grows by less than 64 MB, a
well-behaved client on its own connection keeps its p99 under 50 ms, and the attacker is closed
with the right code. Where grpcio's engine does not hold, the test is a strict xfail naming the
measured failure, so the comparison in docs/security.md is itself tested.
"""

from __future__ import annotations

import gzip
import struct
import time

import httpx
import pytest

from .conftest import BIG, xfail_for
from .h2attack import (
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    HEADERS,
    HEALTH_CHECK,
    ONLINE,
    PREFACE,
    PROTOCOL_ERROR,
    RST_STREAM,
    Conn,
    RssPeak,
    Victim,
    attacker_result,
    frame,
    grpc_message,
    run_attacker,
)
from .serve_process import Served

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
MEMORY_MB, P99_MS = 64, 50
ATTACK_SECONDS = 2.0


def big_answer_request(rows: int = 20) -> bytes:
    """A GetOnlineFeaturesRequest for ``rows`` x station 3's 64 KiB ``code`` (hand-encoded protobuf)."""
    from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
    from ladle.server._proto.feast.types import Value_pb2 as value_pb

    request = serving_pb.GetOnlineFeaturesRequest(
        features=serving_pb.FeatureList(val=["station_features:code"]),
        entities={"station_id": value_pb.RepeatedValue(val=[value_pb.Value(int64_val=3)] * rows)},
    )
    return bytes(request.SerializeToString())


def sustained(
    server: Served, attack: str, seconds: float = ATTACK_SECONDS
) -> tuple[RssPeak, Victim, dict[str, object]]:
    """Run ``attack`` in its own process while a victim calls; the worker's RSS sampled throughout."""
    victim = Victim(server.grpc_port)
    with RssPeak(server.worker_pid) as rss:
        attacker = run_attacker(attack, server.grpc_port, seconds)
        time.sleep(0.3)  # the attacker is connected and sending
        victim.run(seconds - 0.5)
        result = attacker_result(attacker)
    assert server.alive(), "".join(server.output[-20:])
    return rss, victim, result


def calmed(result: dict[str, object]) -> bool:
    """Whether the server closed the attacker's connections with GOAWAY ENHANCE_YOUR_CALM."""
    closes = result["closes"]
    assert isinstance(closes, dict)
    return bool(closes.get(str(ENHANCE_YOUR_CALM)))


def report(request: pytest.FixtureRequest, **numbers: object) -> None:
    """What the test measured, printed (``pytest -s``) for docs/security.md."""
    print(f"\n[{request.node.name}] " + " ".join(f"{k}={v}" for k, v in numbers.items()))


def held(
    request: pytest.FixtureRequest, rss: RssPeak, victim: Victim, result: dict[str, object], *, calm: bool = True
) -> None:
    """Report the numbers; the worker's memory and the victim's p99 stayed bounded, the attacker was calmed."""
    report(request, rss_mb=round(rss.growth_mb, 1), p99_ms=round(victim.p99_ms, 1), **result)
    assert rss.growth_mb < MEMORY_MB
    assert victim.p99_ms < P99_MS
    if calm:
        assert calmed(result)


def test_rapid_reset_sustained(server: Served, request: pytest.FixtureRequest) -> None:
    xfail_for(request, "grpcio", "grpcio keeps the attacker's connection open (victim p99 and memory hold)")
    held(request, *sustained(server, "rapid_reset"))


def test_control_frame_flood(server: Served, request: pytest.FixtureRequest) -> None:
    held(request, *sustained(server, "control_flood"))


def test_empty_continuation_flood(server: Served, request: pytest.FixtureRequest) -> None:
    xfail_for(request, "grpcio", "grpcio closes without GOAWAY ENHANCE_YOUR_CALM (victim p99 12-140 ms across runs)")
    held(request, *sustained(server, "continuation_flood"))


def test_settings_window_flood(server: Served, request: pytest.FixtureRequest) -> None:
    xfail_for(request, "grpcio", "grpcio never closes the attacker (RSS grew 2-424 MB across runs)")
    # thousands of entries in one SETTINGS frame spend the control-frame budget: the attacker is calmed
    held(request, *sustained(server, "settings_window_flood"))


def test_call_flood(server: Served, request: pytest.FixtureRequest) -> None:
    held(request, *sustained(server, "call_flood"), calm=False)  # valid calls: never cut, only paced


def test_zero_window_large_answers(server: Served, request: pytest.FixtureRequest) -> None:
    """4 connections x 50 streams, each answer 1.3 MB, the client's window zero and never opened."""
    xfail_for(request, "grpcio", "grpcio holds every answer with no timeout: RSS grows by hundreds of MB")
    body = grpc_message(big_answer_request())
    conns = [Conn(server.grpc_port, {0x4: 0}) for _ in range(4)]
    try:
        with RssPeak(server.worker_pid) as rss:
            for conn in conns:
                sids = [conn.stream_id() for _ in range(50)]
                conn.send(b"".join(conn.headers(s, ONLINE) + frame(DATA, END_STREAM, s, body) for s in sids))
            deadline = time.monotonic() + 8  # the stall timeout is 2 s
            while time.monotonic() < deadline and sum(len(c.resets()) for c in conns) < 200:
                for conn in conns:
                    conn.read(0.05)
        resets = [code for conn in conns for code in conn.resets()]
    finally:
        for conn in conns:
            conn.close()
    kinds = {code: resets.count(code) for code in set(resets)}
    report(request, rss_mb=round(rss.growth_mb, 1), resets=kinds, answer_mb=round(20 * BIG / 1e6, 1))
    assert server.alive()
    assert rss.growth_mb < MEMORY_MB
    assert len(resets) == 200  # every stream is refused, reset over the byte budget, or reset once stalled


def test_unfinished_requests(server: Served, request: pytest.FixtureRequest) -> None:
    """4 connections x 100 streams, each with 190 KB of a request that never ends."""
    part = grpc_message(bytes(199_000))[:190_000]
    conns = [Conn(server.grpc_port) for _ in range(4)]
    try:
        with RssPeak(server.worker_pid) as rss:
            for conn in conns:
                for _ in range(100):
                    sid = conn.stream_id()
                    data = conn.headers(sid, ONLINE) + b"".join(
                        frame(DATA, 0, sid, part[i : i + 16_384]) for i in range(0, len(part), 16_384)
                    )
                    conn.sock.settimeout(3)
                    if not conn.send(data):
                        break
                conn.drain(0.1)
            time.sleep(2.5)  # past the stall timeout
            for conn in conns:
                conn.drain(0.2)
        resets = [code for conn in conns for code in conn.resets()]
    finally:
        for conn in conns:
            conn.close()
    report(request, rss_mb=round(rss.growth_mb, 1), resets=len(resets))
    assert server.alive()
    assert rss.growth_mb < MEMORY_MB


GOOD = [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check"),
        (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers")]  # fmt: skip


def _with(*changes: tuple[str, str | None]) -> list[tuple[str, str]]:
    """GOOD with fields replaced (value None: removed) or appended."""
    out = [(n, v) for n, v in GOOD if n not in {c[0] for c in changes}]
    return out + [(n, v) for n, v in changes if v is not None]


MALFORMED = {
    "uppercase-name": _with(("X-Upper", "1")),
    "connection": _with(("connection", "keep-alive")),
    "keep-alive": _with(("keep-alive", "timeout=5")),
    "proxy-connection": _with(("proxy-connection", "keep-alive")),
    "transfer-encoding": _with(("transfer-encoding", "chunked")),
    "upgrade": _with(("upgrade", "h2c")),
    "te-gzip": _with(("te", "gzip")),
    "cr-in-value": _with(("x-a", "a\rb")),
    "lf-in-value": _with(("x-a", "a\nb")),
    "nul-in-value": _with(("x-a", "a\x00b")),
    "leading-space": _with(("x-a", " a")),
    "trailing-tab": _with(("x-a", "a\t")),
    "no-method": _with((":method", None)),
    "no-scheme": _with((":scheme", None)),
    "no-path": _with((":path", None)),
    "empty-path": _with((":path", "")),
    "pseudo-after-regular": [*GOOD[1:], GOOD[0]],
    "unknown-pseudo": _with((":status", "200")),
    "repeated-pseudo": [*GOOD[:3], (":path", "/x"), *GOOD[3:]],
}


def test_malformed_request_headers_reset_the_stream(server: Served, request: pytest.FixtureRequest) -> None:
    """RFC 9113 section 8.1.1/8.2/8.3: each malformed request is a stream error PROTOCOL_ERROR; the connection lives.

    Every case on one connection (streams 1, 3, ...), then a valid call that must still be answered.
    """
    xfail_for(request, "grpcio", "grpcio leaves most malformed requests unanswered (the stream hangs), answers "
              "uppercase names and te: gzip, and resets missing pseudo-headers with INTERNAL_ERROR")  # fmt: skip
    conn = Conn(server.grpc_port)
    cases = sorted(MALFORMED)
    try:
        sids = {case: conn.stream_id() for case in cases}
        conn.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, sids[c], conn.encoder.encode(MALFORMED[c]))
                           for c in cases))  # fmt: skip
        sid, data = conn.unary(HEALTH_CHECK, b"")
        conn.send(data)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not conn.eof and conn.status_of(sid) is None:
            conn.read(0.1)
        conn.drain(0.3)
        got = {c: [(f.type, f.code if f.type == RST_STREAM else None) for f in conn.frames if f.stream == sids[c]]
               for c in cases}  # fmt: skip
        report(request, next_status=conn.status_of(sid), goaway=conn.goaway(),
               wrong={c: v for c, v in got.items() if v != [(RST_STREAM, PROTOCOL_ERROR)]})  # fmt: skip
        assert got == {c: [(RST_STREAM, PROTOCOL_ERROR)] for c in cases}
        assert conn.status_of(sid) == 0  # the connection still serves
    finally:
        conn.close()


def test_already_held_hpack_bomb(server: Served, request: pytest.FixtureRequest) -> None:
    """One 4 KiB header in the HPACK table, then blocks naming it 1,000 times (4 MB of headers from 1 KB)."""
    conn = Conn(server.grpc_port)
    try:
        with RssPeak(server.worker_pid) as rss:
            big = conn.encoder.encode([*request_headers_list(), ("x-bomb", "b" * 4000)])
            conn.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, big))
            index = bytes([0x80 | 62])  # the newest dynamic table entry: x-bomb
            bomb = index * 1000  # decoding fails before any header is looked at
            conn.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, bomb))
            conn.drain(1.0)
        report(request, rss_mb=round(rss.growth_mb, 1), goaway=conn.goaway(), resets=conn.resets(),
               status=conn.status_of(3))  # fmt: skip
        assert rss.growth_mb < MEMORY_MB
        assert conn.status_of(3) in (None, 8)  # not served: the connection or the stream is refused
        # built-in: GOAWAY ENHANCE_YOUR_CALM; grpcio: RST_STREAM INTERNAL_ERROR
        assert conn.goaway() == ENHANCE_YOUR_CALM or conn.resets()
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["oversized", "gzip-bomb"])
def test_already_held_large_messages(server: Served, kind: str, request: pytest.FixtureRequest) -> None:
    """A message over --max-body-bytes, and 8 KiB of gzip inflating to 8 MiB: RESOURCE_EXHAUSTED, memory bounded."""
    conn = Conn(server.grpc_port)
    try:
        with RssPeak(server.worker_pid) as rss:
            sid = conn.stream_id()
            extra = [("grpc-encoding", "gzip")] if kind == "gzip-bomb" else []
            if kind == "gzip-bomb":
                body = struct.pack(">BI", 1, 0) + gzip.compress(bytes(8 << 20))
                body = body[:1] + struct.pack(">I", len(body) - 5) + body[5:]
            else:
                body = grpc_message(bytes(300_000))  # the suite's repo allows 200,000-byte bodies
            frames = [frame(DATA, 0, sid, body[i : i + 16_384]) for i in range(0, len(body), 16_384)]
            frames[-1] = frames[-1][:4] + bytes([END_STREAM]) + frames[-1][5:]
            conn.send(conn.headers(sid, ONLINE, extra=extra) + b"".join(frames))
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and conn.status_of(sid) is None and not conn.eof:
                conn.read(0.1)
        report(request, rss_mb=round(rss.growth_mb, 1), status=conn.status_of(sid), resets=conn.resets())
        assert rss.growth_mb < MEMORY_MB
        assert conn.status_of(sid) == 8  # RESOURCE_EXHAUSTED
    finally:
        conn.close()


def request_headers_list() -> list[tuple[str, str]]:
    return [(n, ONLINE if n == ":path" else v) for n, v in GOOD]


def test_slowloris_with_a_file_descriptor_limit(server: Served, request: pytest.FixtureRequest) -> None:
    """300 half-sent prefaces against a worker limited to 256 fds: REST /ready and new gRPC calls still work."""
    xfail_for(request, "grpcio", "grpcio accepts every connection (it has no cap): the worker runs out of "
              "file descriptors and REST /ready fails")  # fmt: skip
    held: list[Conn] = []
    try:
        for _ in range(300):
            try:
                conn = Conn(server.grpc_port, handshake=False)
            except OSError:
                break
            conn.send(PREFACE[:10])
            held.append(conn)
        time.sleep(0.3)
        with httpx.Client(timeout=3) as http:
            ready = http.get(f"http://127.0.0.1:{server.rest_port}/ready").status_code
        time.sleep(2.5)  # past the handshake timeout
        victim = Victim(server.grpc_port)
        victim.run(0.5)
        # A connection the kernel held in the backlog while the worker had no fd to spare is accepted
        # (and its handshake timer started) only once a slot frees: give every one a second timeout.
        deadline = time.monotonic() + 2 * 2.0
        closed = sum(conn.until_closed(max(0.01, deadline - time.monotonic())) for conn in held)
    finally:
        for conn in held:
            conn.close()
    report(request, ready=ready, closed=closed, victim_calls=len(victim.latencies), failures=victim.failures)
    assert ready == 200
    assert victim.latencies and not victim.failures
    assert closed == len(held)
