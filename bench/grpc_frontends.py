"""gRPC front ends under load: what a server costs per call before (and around) a constant handler.

Every front end answers ``/feast.serving.ServingService/GetOnlineFeatures`` with the same fixed
96-byte ``GetOnlineFeaturesResponse`` (3 features, 1 entity) whatever the request, so only the
server's own cost is measured: HTTP/2 framing, HPACK, flow control, gRPC framing, dispatch.

* ``grpcio-aio``: grpcio's ``grpc.aio`` server, a generic handler without (de)serializers (bytes
  in, bytes out), an ``async def`` handler, on uvloop;
* ``h2``: a minimal asyncio protocol on uvloop driving the ``h2`` state machine (python-hyper):
  unary calls only, written here;
* ``ladle``: ``ladle.server.h2grpc.H2GrpcServer`` with a synchronous unary handler (Ladle's
  default gRPC engine).

Each runs as ``--workers`` processes (``python -m bench.grpc_frontends --serve NAME --port P``,
uvloop) sharing one port with SO_REUSEPORT. Before any load, real grpcio client calls (3 per worker,
each on a fresh connection the kernel places on some worker) must get exactly the constant bytes
back, or the run stops; the workers are stopped (killed after 10 s) however it ends. The load generator
is ``h2load`` (C, nghttp2) in another process, one fixed gRPC-framed request (a W3a-like
``GetOnlineFeaturesRequest``), ``-m 1``, ``--warm-up-time 1``; percentiles come from its
per-request log. It shares the machine's cores with the servers. ``server_cpu_us_per_call`` is
the CPU time (user + system, all threads) the server processes spent during the h2load run
divided by the calls they answered in it (warm-up included in both), which the load generator
disturbs less than latency does. h2load checks only the HTTP status, not ``grpc-status``; the
correctness check covers that.

    apt-get install -y nghttp2-client
    .venv/bin/python -m bench.grpc_frontends                                   # all, c=1 and c=32
    .venv/bin/python -m bench.grpc_frontends --only h2,ladle --concurrency 32 --duration 5 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast

from bench.common import emit, percentile, versions

SERVICE = "feast.serving.ServingService"
METHOD = "GetOnlineFeatures"
PATH = f"/{SERVICE}/{METHOD}"
FRONTENDS = ("grpcio-aio", "h2", "ladle")
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]


def response_bytes() -> bytes:
    """The constant answer: a real ``GetOnlineFeaturesResponse`` (3 features of 1 entity, PRESENT)."""
    from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
    from ladle.server._proto.feast.types import Value_pb2 as value_pb

    names = ["current_price", "price_change_1h", "volume_24h"]
    vector = serving_pb.GetOnlineFeaturesResponse.FeatureVector
    present = serving_pb.FieldStatus.PRESENT
    response = serving_pb.GetOnlineFeaturesResponse(
        metadata=serving_pb.GetOnlineFeaturesResponseMetadata(feature_names=serving_pb.FeatureList(val=names)),
        results=[vector(values=[value_pb.Value(double_val=x)], statuses=[present]) for x in (101.25, -0.5, 18250.0)],
    )
    return bytes(response.SerializeToString())


def request_bytes() -> bytes:
    """The request h2load sends: 1 entity x 3 features, as in W3a (the servers ignore it)."""
    from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
    from ladle.server._proto.feast.types import Value_pb2 as value_pb

    features = [f"commodity_price_features:{f}" for f in ("current_price", "price_change_1h", "volume_24h")]
    request = serving_pb.GetOnlineFeaturesRequest(
        features=serving_pb.FeatureList(val=features),
        entities={"commodity_code": value_pb.RepeatedValue(val=[value_pb.Value(string_val="CMD00042")])},
    )
    return bytes(request.SerializeToString())


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (not compressed)."""
    return struct.pack(">?I", False, len(message)) + message


def reuseport_socket(port: int) -> socket.socket:
    """A TCP socket bound to ``HOST:port`` with SO_REUSEPORT, not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


# --- the servers (run in the worker processes) ---------------------------------------------------


class Calls:
    """Calls answered by this worker process (reported with its CPU time on SIGUSR1)."""

    count = 0


Stop = Callable[[], Awaitable[None]]


async def start_grpcio(port: int, response: bytes) -> Stop:
    """grpc.aio with a generic handler, no (de)serializers."""
    import grpc

    async def get_online_features(request: bytes, context: Any) -> bytes:
        Calls.count += 1
        return response

    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    handler = grpc.unary_unary_rpc_method_handler(get_online_features)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    if server.add_insecure_port(f"{HOST}:{port}") != port:
        raise OSError(f"grpcio could not bind {HOST}:{port}")
    await server.start()

    async def stop() -> None:
        await server.stop(1.0)

    return stop


class H2Protocol(asyncio.Protocol):
    """Unary gRPC calls on the ``h2`` state machine: one connection."""

    def __init__(self, framed: bytes, connections: set[H2Protocol]) -> None:
        import h2.config
        import h2.connection

        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.framed = framed
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.paths: dict[int, bytes] = {}  # open streams: their :path
        self.pending: dict[int, bytes] = {}  # response data waiting for flow-control window

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass asyncio's
        self.connections.add(self)
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.connections.discard(self)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        import h2.events
        import h2.exceptions

        if self.transport is None:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()  # h2 queued a GOAWAY
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.paths[event.stream_id] = dict(event.headers).get(b":path", b"")
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.respond(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                for stream_id in list(self.pending):
                    self.send_pending(stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.paths.pop(event.stream_id, None)
                self.pending.pop(event.stream_id, None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.flush()
                self.transport.close()
                return
        self.flush()

    def respond(self, stream_id: int) -> None:
        import h2.exceptions

        path = self.paths.pop(stream_id, None)
        try:
            if path != PATH.encode():
                headers = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"12")]
                self.conn.send_headers(stream_id, headers, end_stream=True)
                return
            self.conn.send_headers(stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")])
            Calls.count += 1
        except h2.exceptions.StreamClosedError:
            return
        self.pending[stream_id] = self.framed
        self.send_pending(stream_id)

    def send_pending(self, stream_id: int) -> None:
        """Send what the windows allow of the response; trailers once all of it went out."""
        import h2.exceptions

        data = self.pending.pop(stream_id)
        try:
            while data:
                size = min(len(data), self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
                if size <= 0:
                    self.pending[stream_id] = data  # wait for WINDOW_UPDATE
                    return
                self.conn.send_data(stream_id, data[:size])
                data = data[size:]
            self.conn.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)
        except h2.exceptions.StreamClosedError:
            return


async def start_h2(port: int, response: bytes) -> Stop:
    """The ``h2`` protocol above on the running (uv)loop."""
    loop = asyncio.get_running_loop()
    connections: set[H2Protocol] = set()
    framed = grpc_frame(response)
    server = await loop.create_server(
        lambda: H2Protocol(framed, connections), sock=reuseport_socket(port), backlog=2048
    )

    async def stop() -> None:
        server.close()
        for protocol in list(connections):
            if protocol.transport is not None:
                protocol.transport.abort()
        await server.wait_closed()

    return stop


async def start_ladle(port: int, response: bytes) -> Stop:
    """``H2GrpcServer`` with a synchronous unary handler (the hot path)."""
    from ladle.server.h2grpc import CallContext, H2GrpcServer, Method

    def get_online_features(request: bytes, context: CallContext) -> bytes:
        Calls.count += 1
        return response

    server = H2GrpcServer({PATH: Method.unary(get_online_features)})
    await server.start(reuseport_socket(port))

    async def stop() -> None:
        await server.stop(1.0)

    return stop


STARTERS: dict[str, Callable[[int, bytes], Awaitable[Stop]]] = {
    "grpcio-aio": start_grpcio,
    "h2": start_h2,
    "ladle": start_ladle,
}


async def serve(frontend: str, port: int) -> None:
    """One worker: serve until SIGTERM/SIGINT or until the parent process is gone."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(f"stats {Calls.count} {time.process_time()}", flush=True))
    stop = await STARTERS[frontend](port, response_bytes())
    parent = os.getppid()
    print("ready", flush=True)
    while not stopping.is_set() and os.getppid() == parent:  # the parent died: don't outlive it
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 1.0)
    await stop()


def serve_main(frontend: str, port: int) -> None:
    """Entry point of ``--serve``."""
    import uvloop

    uvloop.run(serve(frontend, port))


# --- the parent: workers, checks, load ------------------------------------------------------------


class Worker:
    """One ``--serve`` process, with line reads (``ready``, ``stats``) that time out."""

    def __init__(self, frontend: str, port: int) -> None:
        command = [sys.executable, "-m", "bench.grpc_frontends", "--serve", frontend, "--port", str(port)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT)
        assert self.process.stdout is not None
        self.fd = self.process.stdout.fileno()
        self.buffer = b""

    def line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"worker {self.process.pid} said nothing for {timeout:g} s")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise RuntimeError(f"worker {self.process.pid} exited ({self.process.wait()})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def stats(self) -> tuple[int, float]:
        """Calls answered and CPU seconds used so far."""
        self.process.send_signal(signal.SIGUSR1)
        line = self.line(10)
        _, calls, cpu = line.split()
        return int(calls), float(cpu)


class Workers:
    """``count`` workers of one front end on one port; always stopped (then killed) on exit."""

    def __init__(self, frontend: str, count: int) -> None:
        self.frontend = frontend
        self.count = count
        self.workers: list[Worker] = []
        # Hold the port with a bound, non-listening SO_REUSEPORT socket: no connection reaches it,
        # and nothing else can take the port between picking it and the workers binding it.
        self.reserved = reuseport_socket(0)
        self.port = int(self.reserved.getsockname()[1])

    def __enter__(self) -> Workers:
        try:
            for _ in range(self.count):
                self.workers.append(Worker(self.frontend, self.port))
            for worker in self.workers:
                if (line := worker.line(60)) != "ready":
                    raise RuntimeError(f"worker said {line!r}, not 'ready'")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            if worker.process.stdout is not None:
                worker.process.stdout.close()
        self.workers.clear()
        self.reserved.close()

    def stats(self) -> list[tuple[int, float]]:
        return [worker.stats() for worker in self.workers]


def check(port: int, expected: bytes, calls: int) -> None:
    """Real grpcio client calls, one fresh connection each: the answer must be the constant bytes."""
    import grpc

    for _ in range(calls):
        options = [("grpc.use_local_subchannel_pool", 1)]  # a new connection, so workers other than the first get calls
        with grpc.insecure_channel(f"{HOST}:{port}", options=options) as channel:
            answer = channel.unary_unary(PATH)(request_bytes(), timeout=10)
        assert answer == expected, f"wrong answer: {answer!r}"


_FAILED = re.compile(r"requests: .* (\d+) failed, \d+ errored")  # failed: any non-2xx/3xx or reset/network error


def run_h2load(port: int, connections: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """``h2load`` sending one gRPC-framed request; percentiles from its per-request log."""
    data = tmp / "request.grpc"
    data.write_bytes(grpc_frame(request_bytes()))
    log = tmp / f"h2load_{connections}.log"
    log.unlink(missing_ok=True)  # h2load appends
    threads = "1" if connections < 8 else "2"
    command = ["h2load", "-c", str(connections), "-m", "1", "-t", threads, "-D", f"{seconds:g}",
               "--warm-up-time", "1", "-d", str(data), "-H", "content-type: application/grpc",
               "-H", "te: trailers", "--log-file", str(log), f"http://{HOST}:{port}{PATH}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    latencies = [int(r[2]) / 1000 for r in rows]  # start_us, status, duration_us
    non_200 = sum(1 for r in rows if r[1] != "200")
    rate = next(line for line in done.stdout.splitlines() if line.startswith("finished in"))
    failed = _FAILED.search(done.stdout)
    if failed is None:
        raise RuntimeError(f"unexpected h2load output:\n{done.stdout}")
    return {
        "requests": len(latencies),
        "errors": max(non_200, int(failed.group(1))),
        "req_per_s": round(float(rate.split(",")[1].split()[0])),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3) if latencies else 0.0,
        "load_generator": f"h2load -c{connections} -m1 -t{threads}",
    }


def measure(frontend: str, workers: int, concurrencies: list[int], seconds: float, tmp: Path) -> list[dict[str, Any]]:
    """Start the workers, check their answer, then one h2load run per concurrency."""
    expected = response_bytes()
    results = []
    with Workers(frontend, workers) as group:
        check(group.port, expected, 3 * workers)
        for concurrency in concurrencies:
            before = group.stats()
            result = run_h2load(group.port, concurrency, seconds, tmp)
            after = group.stats()
            calls = [a[0] - b[0] for a, b in zip(after, before, strict=True)]
            cpu = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
            result = {
                "workload": f"grpc-frontend-{frontend}-c{concurrency}",
                "frontend": frontend,
                "concurrency": concurrency,
                "workers": workers,
                "duration_s": seconds,
                "response_bytes": len(expected),
                "frontend_versions": versions(("grpcio", "h2", "hpack", "uvloop")),
                **result,
                "server_calls_per_worker": calls,
                "server_cpu_us_per_call": round(cpu / sum(calls) * 1e6, 1) if sum(calls) else None,
            }
            emit(result)
            results.append(result)
    return results


def summary(results: list[dict[str, Any]]) -> str:
    """A Markdown table of the runs (for bench/README.md)."""
    lines = [
        "| front end | concurrency | req/s | p50 ms | p99 ms | mean ms | server CPU µs/call | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['frontend']} | {r['concurrency']} | {r['req_per_s']:,} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['mean_ms']} | {r['server_cpu_us_per_call']} | {r['errors']} |"
        )
    return "\n".join(lines)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds through the finally blocks that stop the workers


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (after 1 s warm-up)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes per front end")
    parser.add_argument("--only", type=lambda s: s.split(","), default=list(FRONTENDS), help=",".join(FRONTENDS))
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32],
                        help="h2load connections, comma-separated")  # fmt: skip
    parser.add_argument("--serve", choices=FRONTENDS, help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_main(args.serve, args.port)
        return
    unknown = set(args.only) - set(FRONTENDS)
    if unknown:
        parser.error(f"unknown front end(s) {sorted(unknown)}; choose from {', '.join(FRONTENDS)}")
    if shutil.which("h2load") is None:
        sys.exit("h2load is missing: apt-get install -y nghttp2-client")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for frontend in args.only:
            results += measure(frontend, args.workers, args.concurrency, args.duration, Path(tmp))
    print(summary(results), file=sys.stderr)


if __name__ == "__main__":
    started = time.time()
    main()
    if "--serve" not in sys.argv:
        print(f"total {time.time() - started:.0f} s", file=sys.stderr)
