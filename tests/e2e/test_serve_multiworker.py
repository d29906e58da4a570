"""``ladle serve --workers 2`` as a real subprocess: shared ports, summed metrics, graceful SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from unit.server_repo import PRICES, build_repo

pytestmark = pytest.mark.slow
BODY = {"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["crude_oil_wti"]}}
REST_REQUESTS, GRPC_REQUESTS = 40, 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    rest: str
    grpc_target: str
    pids: list[int]
    metrics_dir: Path
    output: list[str]


@contextmanager
def two_workers(repo: Path) -> Iterator[tuple[subprocess.Popen[str], int, int, list[str]]]:
    """``ladle serve --workers 2`` on free ports, once its banner says ready: (process, REST port, gRPC
    port, output lines so far); killed on the way out if it is still running."""
    rest_port, grpc_port = free_port(), free_port()
    ladle = Path(sys.executable).parent / "ladle"
    command = [str(ladle), "-c", str(repo), "serve", "--workers", "2", "--port", str(rest_port),
               "--grpc-port", str(grpc_port), "--graceful-timeout", "20"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "ready:" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(90), "server did not start:\n" + "".join(output)
        yield process, rest_port, grpc_port, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("serve_repo")
    build_repo(repo).store.close()
    with two_workers(repo) as (process, rest_port, grpc_port, output):
        banner = next(line for line in output if "ready:" in line)
        match = re.search(r"pids ([\d,]+); metrics dir (\S+)\)", banner)
        assert match, banner
        pids = [int(p) for p in match.group(1).split(",")]
        yield Server(process, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", pids,
                     Path(match.group(2)), output)  # fmt: skip


def _metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in /metrics")


def test_both_workers_serve_and_metrics_add_up(server: Server) -> None:
    assert len(server.pids) == 2
    # A new connection for every request, so the kernel spreads them over the workers.
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(REST_REQUESTS):
            response = client.post(f"{server.rest}/get-online-features", content=json.dumps(BODY))
            assert response.status_code == 200
            assert response.json()["results"][1]["values"] == [PRICES["crude_oil_wti"][0]]
    request = serving_pb.GetOnlineFeaturesRequest(
        features=serving_pb.FeatureList(val=BODY["features"]),
        entities={"commodity_code": value_pb.RepeatedValue(val=[value_pb.Value(string_val="brent")])},
    )
    for _ in range(GRPC_REQUESTS // 3):  # one connection per channel (no shared subchannel pool)
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(server.grpc_target, options=options) as channel:
            for _ in range(3):
                reply = serving_grpc.ServingServiceStub(channel).GetOnlineFeatures(request, timeout=10)
                assert reply.results[1].values[0].double_val == PRICES["brent"][0]
    time.sleep(1.2)  # workers write their metrics every half second
    # Each worker answered some of them (SO_REUSEPORT spreads connections), as its own file shows.
    per_worker = {pid: _rest_count(server.metrics_dir / f"histogram_{pid}.db") for pid in server.pids}
    assert all(count > 0 for count in per_worker.values()), per_worker
    assert sum(per_worker.values()) == REST_REQUESTS
    for _ in range(6):  # whichever worker answers the scrape, the totals are the same
        text = httpx.get(f"{server.rest}/metrics", headers={"Connection": "close"}).text
        rest = 'feast_online_request_latency_count{endpoint="/get-online-features",protocol="rest"}'
        grpc_ = 'feast_online_request_latency_count{endpoint="/feast.serving.ServingService/GetOnlineFeatures",'
        assert _metric(text, rest) == REST_REQUESTS
        assert _metric(text, grpc_) == GRPC_REQUESTS
        assert _metric(text, 'feast_feature_request_count_total{feature_view="commodity_price_features"}') == (
            REST_REQUESTS + GRPC_REQUESTS
        )
        assert _metric(text, "ladle_server_workers") == 2


def test_sigterm_finishes_in_flight_requests(server: Server) -> None:
    raw = json.dumps(BODY).encode()
    head = (
        f"POST /get-online-features HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(server.rest.rsplit(":", 1)[1])), timeout=30) as conn:
        conn.sendall(head + raw[:10])  # the request is in flight: headers read, body incomplete
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        conn.sendall(raw[10:])
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _length(reply):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body["results"][1]["values"] == [PRICES["crude_oil_wti"][0]]
    assert server.process.wait(30) == 0, "".join(server.output)
    for pid in server.pids:
        assert not _alive(pid), f"worker {pid} outlived the supervisor"
    assert not server.metrics_dir.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(server.rest.rsplit(":", 1)[1])), timeout=2).close()


def _rest_count(path: Path) -> float:
    from prometheus_client.multiprocess import MultiProcessCollector

    for metric in MultiProcessCollector.merge([str(path)]):
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "feast_online_request_latency_count" and labels.get("protocol") == "rest":
                return float(sample.value)
    return 0.0


def _length(reply: bytes) -> int:
    match = re.search(rb"content-length: (\d+)", reply, re.IGNORECASE)
    return int(match.group(1)) if match else 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
