"""The attack suite's servers: ``ladle serve`` as a subprocess (its RSS is what we measure), one per engine.

The suite's servers use short timeouts (so the suite stays fast) and a 16 MiB worker byte budget
(under the suite's 64 MB memory bound); every other limit keeps its default.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ladle import FeatureStore
from unit.server_repo import PROJECT, build_repo

BIG = 64 << 10  # bytes of the `code` feature of station 3: large answers from small requests
SUITE_SETTINGS = [
    "--grpc-handshake-timeout", "2", "--grpc-stall-timeout", "2", "--grpc-idle-timeout", "30",
    "--grpc-worker-buffer-bytes", str(16 << 20), "--max-entities-per-request", "10000",
]  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``ladle serve``: its ports and its one worker's pid."""

    engine: str
    process: subprocess.Popen[str]
    rest_port: int
    grpc_port: int
    pid: int
    output: list[str]

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture(scope="session")
def attack_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server tests' repo plus station 3, whose ``code`` is 64 KiB."""
    path = tmp_path_factory.mktemp("attack_repo")
    build_repo(path).store.close()
    store = FeatureStore(repo_path=path)
    view = store.snapshot(allow_cache=False).feature_view("station_features")
    when = datetime.now(UTC) - timedelta(hours=1)
    table = pa.table({
        "station_id": pa.array([3], pa.int64()), "name": ["BIG"], "active": [True],
        "elevation": pa.array([1], pa.int32()), "readings": pa.array([[]], pa.list_(pa.float64())),
        "code": [bytes(BIG)], "installed": pa.array([when], pa.timestamp("us", tz="UTC")),
        "event_timestamp": pa.array([when], pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    store.online_store.write(PROJECT, view, table)
    store.close()
    return path


def start_server(repo: Path, engine: str, *, nofile: int | None = None, extra: tuple[str, ...] = ()) -> Server:
    rest_port, grpc_port = free_port(), free_port()
    ladle = Path(sys.executable).parent / "ladle"
    command = [str(ladle), "-c", str(repo), "serve", "--workers", "1", "--port", str(rest_port),
               "--grpc-port", str(grpc_port), "--grpc-engine", engine, "--graceful-timeout", "1",
               *SUITE_SETTINGS, *extra]  # fmt: skip
    if nofile is not None:  # the shell sets the limit before the server starts
        command = ["sh", "-c", f'ulimit -n {nofile} && exec "$@"', "sh", *command]
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
    if not ready.wait(60):
        process.kill()
        raise AssertionError("server did not start:\n" + "".join(output))
    match = re.search(r"pids ([\d,]+)", next(line for line in output if "ready:" in line))
    assert match
    return Server(engine, process, rest_port, grpc_port, int(match.group(1).split(",")[0]), output)


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)


@pytest.fixture(scope="module", params=["ladle", "grpcio"])
def grpc_engine(request: pytest.FixtureRequest) -> str:
    """Every attack against both engines; ``xfail_for`` marks where grpcio falls over."""
    return str(request.param)


@pytest.fixture(scope="module")
def server(attack_repo: Path, grpc_engine: str) -> Iterator[Server]:
    started = start_server(attack_repo, grpc_engine, nofile=256)  # the slowloris test needs a small fd limit
    yield started
    stop_server(started)


@pytest.fixture
def make_server(attack_repo: Path, grpc_engine: str) -> Iterator[Callable[..., Server]]:
    """Servers of one test (with their own limits), stopped at its end."""
    started: list[Server] = []

    def make(**kwargs: object) -> Server:
        started.append(start_server(attack_repo, grpc_engine, **kwargs))  # type: ignore[arg-type]
        return started[-1]

    yield make
    for s in started:
        stop_server(s)


def xfail_for(request: pytest.FixtureRequest, engine: str, reason: str) -> None:
    """Mark the running test strict-xfail when it runs against ``engine`` (a measured gap, kept honest)."""
    if request.getfixturevalue("grpc_engine") == engine:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
