"""W3a (and W3c) with served-feature logging, measured request by request: two servers, interleaved.

``bench/w3_feature_log.py`` measures whole runs of a few seconds with wrk / h2load, plain and logged
in turn, and on a shared 2-vCPU VM the machine drifts between runs by more than the 5 % to show.
This bench pairs requests instead of runs:

* two ``ladle serve`` processes (same ``--workers``) from one repo at the same time: **P** only
  ever answers the plain service (``w3a_plain``), **L** only the logged one (``w3a_logged``,
  ``sample_rate`` 1.0 by default under the configuration's default ``cpu_budget`` and flush
  interval, as ``bench/w3_feature_log.py``'s headline figures). P's processes never log; all of
  logging's work (request path, hand-over thread, writer process) lands in L's process tree;
* one client at concurrency 1 (this process, raw sockets, one keep-alive connection to each
  server) sends pairs of requests for the **same random entity** (bodies identical but for the
  service name), one to P and one to L, in a random order within each pair; each request is
  timed with ``time.perf_counter_ns()`` from just before its bytes are sent to the last byte of
  its answer (request bytes are built before, answers checked after the clock stops);
* REST is HTTP/1.1 keep-alive (``Content-Length`` framing); gRPC a minimal HTTP/2 client (preface,
  SETTINGS with the largest initial window, a fixed HPACK block of literals without indexing and
  no Huffman, HEADERS + DATA on a new odd stream per call, frames read until the trailers'
  END_STREAM; SETTINGS, PING and WINDOW_UPDATE handled).

A drift of the machine hits both requests of a pair within a millisecond, so the comparison is
within pairs. Reported per protocol: each arm's p50 / p90 / p99 / mean, the change of L's p50
against P's with a 90 % bootstrap interval over blocks of consecutive pairs (blocks resampled with
replacement, so slow drift stays inside a block), the mean paired difference (L - P) with its
block-bootstrap interval, the share of L's requests found in its log (rows stamped inside the
measurement over rows served), and each server's CPU per request (its whole process tree: master,
workers, the logged side's writer processes), read from ``/proc``.

    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w3_paired --duration 60 --warmup 10
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w3_paired --only grpc --workload W3c --duration 60
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w3_paired --control          # A/A: both plain
    PYTHONPATH=$PWD/src:$PWD .venv/bin/python -m bench.w3_paired --cpu-budget none  # log every request

Figures and the design's limits: docs/feature-logging.md, "Request-interleaved sitting".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import PairedMeasure, block_bootstrap_intervals, emit, paired_blocks, percentile, tree_cpu_seconds
from bench.data import FEATURES, ensure_ticks
from bench.w3_feature_log import FLUSH_INTERVAL, _workers, add_common_options, add_services, pa_ts
from bench.w3_server import ENTITIES, W3A_FEATURES, Server, build_repo, grpc_frame, teardown

#: Entities per request of each workload (both at concurrency 1).
WORKLOADS = {"W3a": 1, "W3c": 100}
GRPC_PATH = "/feast.serving.ServingService/GetOnlineFeatures"
#: Every how many pairs both answers are decoded and their values compared (outside the clock).
SPOT_CHECK_EVERY = 97
ARMS = ("plain", "logged")

# --------------------------------------------------------------------------------------------
# REST: HTTP/1.1 keep-alive


def rest_request(port: int, service: str, codes: Sequence[str]) -> bytes:
    """The bytes of one ``POST /get-online-features`` for ``codes`` through ``service``."""
    body = json.dumps({"feature_service": service, "entities": {"commodity_code": list(codes)}}).encode()
    head = (
        f"POST /get-online-features HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def parse_http_head(buffer: bytes | bytearray) -> tuple[int, int, int] | None:
    """``(status, content_length, body_start)`` of the HTTP/1.1 response head at the start of
    ``buffer``, or ``None`` while the head is incomplete. A response without ``Content-Length``
    (chunked, or closed) is an error: the server frames its answers with it."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x response: {lines[0]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked response: not expected from ladle serve")
    if length is None:
        raise ValueError("response without Content-Length")
    return int(status_line[1]), length, end + 4


class RestClient:
    """One keep-alive HTTP/1.1 connection; :meth:`call` times one request."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, payload: bytes) -> tuple[int, int, bytes]:
        """Send ``payload``; ``(nanoseconds, status, body)``, the clock stopped at the body's last byte."""
        sock, buffer = self.sock, bytearray()
        started = time.perf_counter_ns()
        sock.sendall(payload)
        head = None
        while head is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buffer += chunk
            head = parse_http_head(buffer)
        status, length, start = head
        while len(buffer) < start + length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-body")
            buffer += chunk
        elapsed = time.perf_counter_ns() - started
        if len(buffer) != start + length:
            raise ValueError("bytes after the response (no pipelining was asked for)")
        return elapsed, status, bytes(buffer[start:])

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


# --------------------------------------------------------------------------------------------
# gRPC: a minimal HTTP/2 client

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
MAX_WINDOW = 2**31 - 1
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_ENABLE_PUSH = 0x4, 0x2


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer with an N-bit prefix (RFC 7541 5.1); ``first`` holds the byte's other bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_literal(name: str, value: str) -> bytes:
    """A header field as a literal without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    raw_name, raw_value = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(raw_name), 7) + raw_name + hpack_int(len(raw_value), 7) + raw_value


def grpc_header_block(port: int) -> bytes:
    """The request header block of every call (no dynamic table: the same bytes each time)."""
    fields = [(":method", "POST"), (":scheme", "http"), (":path", GRPC_PATH), (":authority", f"127.0.0.1:{port}"),
              ("content-type", "application/grpc"), ("te", "trailers")]  # fmt: skip
    return b"".join(hpack_literal(n, v) for n, v in fields)


def grpc_message(service: str, codes: Sequence[str]) -> bytes:
    """The gRPC-framed ``GetOnlineFeaturesRequest`` for ``codes`` through ``service``."""
    from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
    from ladle.server._proto.feast.types import Value_pb2 as value_pb

    values = value_pb.RepeatedValue(val=[value_pb.Value(string_val=c) for c in codes])
    message = serving_pb.GetOnlineFeaturesRequest(feature_service=service, entities={"commodity_code": values})
    return grpc_frame(message.SerializeToString())


def split_frames(buffer: bytes | bytearray) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """The complete frames at the start of ``buffer`` as ``(type, flags, stream, payload)`` and the
    bytes they took (a partial frame at the end is left for the next read)."""
    frames, pos = [], 0
    while len(buffer) - pos >= 9:
        length = int.from_bytes(buffer[pos : pos + 3], "big")
        if len(buffer) - pos < 9 + length:
            break
        kind, flags = buffer[pos + 3], buffer[pos + 4]
        stream = int.from_bytes(buffer[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        frames.append((kind, flags, stream, bytes(buffer[pos + 9 : pos + 9 + length])))
        pos += 9 + length
    return frames, pos


def header_fragment(flags: int, payload: bytes) -> bytes:
    """A HEADERS frame's block fragment (padding and priority fields removed)."""
    start, end = 0, len(payload)
    if flags & PADDED:
        start, end = 1, len(payload) - payload[0]
    if flags & PRIORITY:
        start += 5
    return payload[start:end]


class GrpcResponse:
    """One call's answer: header blocks (response headers, trailers) and the DATA bytes."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.data = bytearray()
        self.reset: int | None = None


class H2Client:
    """One HTTP/2 connection for unary gRPC calls, one at a time; :meth:`call` times one call."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stream = -1
        self.buffer = bytearray()
        self.send_window = 65535  # the connection's, towards the server
        self.stream_send_window = 65535  # the server's SETTINGS_INITIAL_WINDOW_SIZE
        self.received = 0  # DATA bytes since the last WINDOW_UPDATE we sent for the connection
        settings = struct.pack(">HI", SETTINGS_ENABLE_PUSH, 0) + struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE,
                                                                             MAX_WINDOW)  # fmt: skip
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0,
                          struct.pack(">I", MAX_WINDOW - 65535)))  # fmt: skip
        self.pending: list[bytes] = []  # control answers (SETTINGS ACK, PING ACK) to send

    def _control(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            for pos in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[pos : pos + 6])
                if key == SETTINGS_INITIAL_WINDOW_SIZE:
                    self.stream_send_window = value
            self.pending.append(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            self.pending.append(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE and stream == 0:
            self.send_window += struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        elif kind == GOAWAY:
            raise ConnectionError(f"GOAWAY from the server: {payload[8:]!r}")

    def _flush_pending(self) -> None:
        if self.pending:
            self.sock.sendall(b"".join(self.pending))
            self.pending.clear()

    def prepare(self, size: int) -> None:
        """Before the clock: answer control frames, keep the connection windows open both ways."""
        if self.received > MAX_WINDOW // 2:
            self.pending.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.received)))
            self.received = 0
        self._flush_pending()
        if size > self.stream_send_window:
            raise ValueError("a request larger than the server's stream window")
        self.sock.setblocking(False)
        try:  # take in what arrived after the last answer (WINDOW_UPDATE, PING, SETTINGS)
            while True:
                try:
                    chunk: bytes | None = self.sock.recv(65536)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":
                    raise ConnectionError("the server closed the connection")
                if chunk:
                    self.buffer += chunk
                    frames, used = split_frames(self.buffer)
                    del self.buffer[:used]
                    for kind, flags, stream, payload in frames:
                        if kind == DATA:
                            raise ValueError(f"DATA outside a call (stream {stream})")
                        self._control(kind, flags, stream, payload)
                    continue
                if self.send_window >= size:
                    break
                time.sleep(0.0001)  # the server owes us a WINDOW_UPDATE
        finally:
            self.sock.setblocking(True)
        self._flush_pending()

    def call(self, header_block: bytes, message: bytes) -> tuple[int, GrpcResponse]:
        """One unary call on a new stream: ``(nanoseconds, response)``, the clock stopped at the
        trailers' END_STREAM. Call :meth:`prepare` before (outside the clock)."""
        self.stream += 2
        stream_id = self.stream
        out = frame(HEADERS, END_HEADERS, stream_id, header_block) + frame(DATA, END_STREAM, stream_id, message)
        self.send_window -= len(message)
        response, sock, buffer = GrpcResponse(), self.sock, self.buffer
        block = b""
        started = time.perf_counter_ns()
        sock.sendall(out)
        done = False
        while not done:
            frames, used = split_frames(buffer)
            if not frames:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                buffer += chunk
                continue
            del buffer[:used]
            for kind, flags, stream, payload in frames:
                if stream == stream_id:
                    if kind == DATA:
                        response.data += payload[1 : len(payload) - payload[0]] if flags & PADDED else payload
                        self.received += len(payload)
                    elif kind in (HEADERS, CONTINUATION):
                        block += header_fragment(flags, payload) if kind == HEADERS else payload
                        if flags & END_HEADERS:
                            response.blocks.append(block)
                            block = b""
                    elif kind == RST_STREAM:
                        response.reset = struct.unpack(">I", payload)[0]
                        done = True
                    if flags & END_STREAM and kind in (DATA, HEADERS):
                        done = True
                elif stream == 0:
                    self._control(kind, flags, stream, payload)
                    if kind == DATA:
                        raise ValueError("DATA on stream 0")
                if kind == DATA and stream != stream_id:
                    self.received += len(payload)
        elapsed = time.perf_counter_ns() - started
        return elapsed, response

    def close(self) -> None:
        """Close the connection (GOAWAY first)."""
        try:
            self.sock.sendall(frame(GOAWAY, 0, 0, struct.pack(">II", self.stream if self.stream > 0 else 0, 0)))
        finally:
            self.sock.close()


def grpc_message_payload(data: bytes | bytearray) -> bytes:
    """The one protobuf message of a unary answer's DATA (the 5-byte gRPC prefix stripped)."""
    if len(data) < 5 or data[0] != 0:
        raise ValueError("not one uncompressed gRPC message")
    (length,) = struct.unpack(">I", bytes(data[1:5]))
    if len(data) != 5 + length:
        raise ValueError(f"gRPC message of {len(data) - 5} bytes, prefix says {length}")
    return bytes(data[5:])


class GrpcChecker:
    """Checks answers' header blocks (``:status`` 200, ``grpc-status`` 0), decoding each distinct
    block once per connection (ladle serve's blocks leave the HPACK table alone, so they repeat)."""

    def __init__(self) -> None:
        import hpack

        self.decoder = hpack.Decoder()
        self.known: dict[bytes, list[tuple[str, str]]] = {}

    def headers(self, block: bytes) -> list[tuple[str, str]]:
        """The decoded header list of ``block``."""
        if block not in self.known:
            decoded = self.decoder.decode(block)
            self.known[block] = [(str(n), str(v)) for n, v in decoded]  # hpack gives str by default
        return self.known[block]

    def check(self, response: GrpcResponse) -> None:
        """Raise unless the answer is a complete OK unary response."""
        if response.reset is not None:
            raise ValueError(f"stream reset: {response.reset}")
        if len(response.blocks) != 2:
            raise ValueError(f"{len(response.blocks)} header blocks (trailers-only answer?): "
                             f"{[self.headers(b) for b in response.blocks]}")  # fmt: skip
        head, trailers = (dict(self.headers(b)) for b in response.blocks)
        if head.get(":status") != "200" or trailers.get("grpc-status") != "0":
            raise ValueError(f"not OK: {head} {trailers}")


# --------------------------------------------------------------------------------------------
# decoding answers (spot checks, outside the clock)


def rest_values(body: bytes) -> tuple[list[str], list[list[Any]]]:
    """``(entity keys, feature columns)`` of a REST answer, every status PRESENT."""
    reply = json.loads(body)
    names = reply["metadata"]["feature_names"]
    columns = {n: r for n, r in zip(names, reply["results"], strict=True)}
    for name, result in columns.items():
        if name != "commodity_code" and any(s != "PRESENT" for s in result["statuses"]):
            raise ValueError(f"{name}: not every value PRESENT: {result['statuses']}")
    keys = [str(k) for k in columns["commodity_code"]["values"]]
    return keys, [columns[n]["values"] for n in names if n != "commodity_code"]


def grpc_values(message: bytes) -> tuple[list[str], list[list[Any]]]:
    """``(entity keys, feature columns)`` of a gRPC answer, every status PRESENT."""
    from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb

    reply = serving_pb.GetOnlineFeaturesResponse.FromString(message)
    names = list(reply.metadata.feature_names.val)
    keys, columns = [], []
    for name, result in zip(names, reply.results, strict=True):
        values = [v.WhichOneof("val") and getattr(v, v.WhichOneof("val")) for v in result.values]
        if name == "commodity_code":
            keys = [str(v) for v in values]
        else:
            if any(s != serving_pb.FieldStatus.PRESENT for s in result.statuses):
                raise ValueError(f"{name}: not every value PRESENT")
            columns.append(values)
    return keys, columns


def check_pair(decoded: dict[str, tuple[list[str], list[list[Any]]]], codes: Sequence[str], features: int) -> None:
    """Both arms answered ``codes`` in order, with ``features`` columns, and the same values."""
    for arm, (keys, columns) in decoded.items():
        if keys != list(codes):
            raise ValueError(f"{arm}: answered {keys[:3]} for {list(codes)[:3]}")
        if len(columns) != features or any(len(c) != len(codes) for c in columns):
            raise ValueError(f"{arm}: {len(columns)} columns, expected {features} of {len(codes)}")
    if decoded["plain"][1] != decoded["logged"][1]:
        raise ValueError(f"the arms answered different values for {list(codes)[:3]}")


# --------------------------------------------------------------------------------------------
# statistics


def arm_summary(ns: Sequence[int]) -> dict[str, float]:
    """p50, p90, p99 and mean of the latencies ``ns`` (nanoseconds), in milliseconds."""
    ms = [v / 1e6 for v in ns]
    return {
        "requests": len(ms),
        "p50_ms": round(percentile(ms, 50), 4),
        "p90_ms": round(percentile(ms, 90), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "mean_ms": round(sum(ms) / len(ms), 4),
    }


def block_bootstrap(
    plain: Sequence[float], logged: Sequence[float], block: int, resamples: int = 2000, seed: int = 1
) -> dict[str, Any]:
    """The change of L's p50 against P's (%) and the mean paired difference (µs), each with a 90 %
    interval from resampling blocks of consecutive pairs with replacement (``len // block`` blocks
    of about ``block`` pairs each, every pair in one), so a slow drift of the machine stays inside
    a block; also the spread of the blocks' own p50 changes."""
    import numpy as np

    p, q = np.asarray(plain, dtype=np.float64), np.asarray(logged, dtype=np.float64)
    out: dict[str, Any] = {
        "p50_change_pct": round(float(100 * (np.median(q) / np.median(p) - 1)), 2),
        "mean_paired_diff_us": round(float(np.mean(q - p)) / 1e3, 2),
    }
    pb, qb = paired_blocks(p, q, block)
    out["blocks"] = len(pb)
    if len(pb) < 2:
        return out
    measures: dict[str, PairedMeasure] = {
        "p50_change_90ci_pct": lambda a, b: float(100 * (np.median(b) / np.median(a) - 1)),
        "mean_paired_diff_90ci_us": lambda a, b: float(np.mean(b - a)) / 1e3,
    }
    intervals = block_bootstrap_intervals(p, q, block, measures, resamples, seed)
    out.update({name: [round(v, 2) for v in bounds] for name, bounds in intervals.items()})
    per_block = np.array([100 * (np.median(b) / np.median(a) - 1) for a, b in zip(pb, qb, strict=True)])
    out["block_p50_changes_pct"] = {
        "min": round(float(per_block.min()), 1),
        "median": round(float(np.median(per_block)), 1),
        "max": round(float(per_block.max()), 1),
        "share_logged_slower": round(float(np.mean(per_block > 0)), 3),
    }
    return out


def log_rows_between(repo: Path, start: float, end: float) -> int:
    """Rows of every feature log in ``repo`` stamped within ``[start, end]`` (epoch seconds)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    root = repo / "data" / "feature_logs"
    if not root.exists():
        return 0
    total = 0
    for folder in sorted(root.iterdir()):
        times = ds.dataset(folder, format="parquet").to_table(columns=["log_time"]).column("log_time")
        both = pc.and_(pc.greater_equal(times, pa_ts(start)), pc.less_equal(times, pa_ts(end)))
        total += pc.sum(both).as_py() or 0
    return int(total)


# --------------------------------------------------------------------------------------------
# the run


class Arm:
    """One server and its client for one protocol."""

    def __init__(self, name: str, server: Server, protocol: str, service: str) -> None:
        self.name, self.server, self.protocol, self.service = name, server, protocol, service
        self.port = server.rest_port if protocol == "rest" else server.grpc_port
        self.rest = RestClient(self.port) if protocol == "rest" else None
        self.h2 = H2Client(self.port) if protocol == "grpc" else None
        self.checker = GrpcChecker() if protocol == "grpc" else None
        self.block = grpc_header_block(self.port)

    def build(self, codes: Sequence[str]) -> bytes:
        """The request bytes for ``codes`` (before the clock)."""
        if self.rest is not None:
            return rest_request(self.port, self.service, codes)
        return grpc_message(self.service, codes)

    def timed(self, payload: bytes) -> tuple[int, Callable[[], tuple[list[str], list[list[Any]]]]]:
        """One timed request: nanoseconds, and a function decoding its answer (called when needed)."""
        if self.rest is not None:
            elapsed, status, body = self.rest.call(payload)
            if status != 200:
                raise ValueError(f"{self.name}: HTTP {status}: {body[:200]!r}")
            return elapsed, lambda: rest_values(body)
        assert self.h2 is not None and self.checker is not None
        self.h2.prepare(len(payload))
        elapsed, response = self.h2.call(self.block, payload)
        self.checker.check(response)
        message = grpc_message_payload(response.data)
        return elapsed, lambda: grpc_values(message)

    def close(self) -> None:
        """Close the client connection."""
        if self.rest is not None:
            self.rest.close()
        if self.h2 is not None:
            self.h2.close()


def interleave(
    arms: dict[str, Arm], rows: int, seconds: float, rng: random.Random, features: int
) -> tuple[dict[str, list[int]], int, list[str]]:
    """Pairs of requests for ``seconds``: one entity draw per pair, the arms in a random order
    within it; returns each arm's latencies in pair order, the pairs checked, and the orders."""
    times: dict[str, list[int]] = {a: [] for a in ARMS}
    firsts: list[str] = []
    checked, pair = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        codes = [f"CMD{rng.randrange(ENTITIES):05d}" for _ in range(rows)]
        order = ARMS if rng.random() < 0.5 else ARMS[::-1]
        payloads = {a: arms[a].build(codes) for a in ARMS}
        decoders = {}
        for arm in order:
            elapsed, decoders[arm] = arms[arm].timed(payloads[arm])
            times[arm].append(elapsed)
        firsts.append(order[0])
        if pair % SPOT_CHECK_EVERY == 0:
            check_pair({a: decoders[a]() for a in ARMS}, codes, features)
            checked += 1
        pair += 1
    return times, checked, firsts


def measure(
    protocol: str, servers: dict[str, Server], repo: Path, rows: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Warm-up, then the measured interleaving of one protocol; one result."""
    prefix = "w3a" if rows == 1 else "w3c"
    features = len(W3A_FEATURES) if rows == 1 else len(FEATURES)
    # --control: an A/A run, server L asked for the plain service too (the design's own bias)
    services = {a: f"{prefix}_{'plain' if args.control else a}" for a in ARMS}
    arms = {a: Arm(a, servers[a], protocol, services[a]) for a in ARMS}
    rng = random.Random(args.seed)
    try:
        interleave(arms, rows, args.warmup, rng, features)
        load_before = os.getloadavg()
        cpu_before = {a: tree_cpu_seconds(servers[a].process.pid) for a in ARMS}
        workers_before = {a: {w: tree_cpu_seconds(w) for w in _workers(servers[a].process.pid)} for a in ARMS}
        start = time.time()
        times, checked, firsts = interleave(arms, rows, args.duration, rng, features)
        end = time.time()
        cpu = {a: tree_cpu_seconds(servers[a].process.pid) - cpu_before[a] for a in ARMS}
        workers = {a: {w: round(tree_cpu_seconds(w) - c, 3) for w, c in workers_before[a].items()} for a in ARMS}
        load_after = os.getloadavg()
    finally:
        for arm in arms.values():
            arm.close()
    pairs = len(times["plain"])
    result: dict[str, Any] = {
        "workload": f"{'W3a' if rows == 1 else 'W3c'}-{protocol}-feature-log-paired",
        "entities": rows,
        "services": services,
        "server_workers": args.workers,
        "sample_rate": args.sample_rate,
        "cpu_budget": args.cpu_budget,
        "flush_interval_secs": FLUSH_INTERVAL,
        "pairs": pairs,
        "seconds": round(end - start, 2),
        "pairs_value_checked": checked,
        "logged_first_share": round(firsts.count("logged") / pairs, 3),
        "plain": arm_summary(times["plain"]),
        "logged": arm_summary(times["logged"]),
        **block_bootstrap(times["plain"], times["logged"], args.block),
        "cpu_us_per_req": {a: round(cpu[a] / pairs * 1e6, 1) for a in ARMS},
        "worker_cpu_s": {a: sorted(workers[a].values(), reverse=True) for a in ARMS},
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "_span": (start, end),
    }
    result["cpu_per_req_change_pct"] = round(
        100 * (result["cpu_us_per_req"]["logged"] / result["cpu_us_per_req"]["plain"] - 1), 1
    )
    return result


def run(args: argparse.Namespace) -> None:
    """Set up the repo and both servers, measure each protocol, then count the logged rows."""
    ticks = ensure_ticks(args.data)
    rows = WORKLOADS[args.workload]
    with tempfile.TemporaryDirectory() as tmp_dir:
        repo = Path(tmp_dir) / "repo"
        repo.mkdir()
        build_repo(repo, ticks, args.redis)
        add_services(repo, args.sample_rate, args.cpu_budget, FLUSH_INTERVAL)
        try:
            servers: dict[str, Server] = {}
            results = []
            try:
                for arm in ARMS:
                    servers[arm] = Server(repo, args.workers)
                for protocol in args.only:
                    results.append(measure(protocol, servers, repo, rows, args))
            finally:
                for server in servers.values():
                    server.stop()  # graceful: L's workers hand over and write what they hold
            for result in results:
                start, end = result.pop("_span")
                logged = log_rows_between(repo, start, end)
                result["log_rows_in_span"] = logged
                result["logged_share"] = round(logged / (result["pairs"] * rows), 3)
                emit(result)
        finally:
            teardown(repo)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_common_options(parser)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per protocol")
    parser.add_argument("--warmup", type=float, default=10.0, help="interleaved seconds before, not reported")
    parser.add_argument("--workers", type=int, default=2, help="ladle serve --workers (each server)")
    parser.add_argument("--workload", default="W3a", choices=sorted(WORKLOADS), help="W3a (1 entity) or W3c (100)")
    parser.add_argument("--control", action="store_true", help="A/A: server L answers the plain service too")
    parser.add_argument("--block", type=int, default=500, help="pairs per bootstrap block")
    parser.add_argument("--seed", type=int, default=42, help="entity and order draws")
    parser.add_argument("--only", type=lambda s: s.split(","), default=["rest", "grpc"], help="rest, grpc or both")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
