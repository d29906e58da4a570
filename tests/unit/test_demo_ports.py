"""scripts/demo.sh refuses busy ports in one line before it starts anything (it used to query whatever answered)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port that another server is listening on (with SO_REUSEPORT, as a second ladle serve would)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield int(server.getsockname()[1])
    server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("which", ["rest", "grpc", "kafka"])
def test_a_busy_port_stops_the_demo_in_one_line(busy_port: int, which: str) -> None:
    ports = {"rest": free_port(), "grpc": free_port(), "kafka": free_port(), which: busy_port}
    env = {
        **os.environ,
        "LADLE_SERVE_PORT": str(ports["rest"]),
        "LADLE_SERVE_GRPC_PORT": str(ports["grpc"]),
        "LADLE_DEMO_KAFKA_PORT": str(ports["kafka"]),
    }
    proc = subprocess.run(["bash", str(DEMO)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""  # nothing ran: no ingest, no apply, no query
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"demo: port {busy_port} on 127.0.0.1 is already in use" in lines[0]
    assert "LADLE_SERVE_PORT=" in lines[0] and "LADLE_DEMO_KAFKA_PORT=" in lines[0]
