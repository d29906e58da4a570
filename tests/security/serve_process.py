"""``ladle serve`` as a real subprocess for the REST-limit and TLS tests (one worker, so its RSS and caps are one)."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from unit.server_repo import build_repo

REPO_LOCK = threading.Lock()


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_repo(path: Path) -> Path:
    """A small real feature repo (SQLite registry and online store) at ``path``."""
    with REPO_LOCK:
        build_repo(path).store.close()
    return path


@dataclass
class Served:
    """A running server: its ports, its one worker's pid, and what it printed."""

    process: subprocess.Popen[str]
    rest_port: int
    grpc_port: int
    worker_pid: int
    output: list[str]

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self.process.poll() is None

    def rss_mb(self) -> float:
        """The worker's resident set size, in MiB."""
        text = Path(f"/proc/{self.worker_pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        assert match, text
        return int(match.group(1)) / 1024


def fd_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` giving the server process (and so its workers) ``limit`` file descriptors."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@contextmanager
def serve(
    repo: Path, *flags: str, preexec: Callable[[], None] | None = None, start_timeout: float = 90
) -> Iterator[Served]:
    """Run ``ladle serve`` (one worker) on free ports until the block ends."""
    rest_port, grpc_port = free_port(), free_port()
    ladle = Path(sys.executable).parent / "ladle"
    command = [str(ladle), "-c", str(repo), "serve", "--workers", "1", "--port", str(rest_port),
               "--grpc-port", str(grpc_port), "--graceful-timeout", "2", *flags]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # preexec_fn only calls setrlimit (async-signal-safe), so the threads of this test process do not matter.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,  # noqa: PLW1509
        env=env,
    )
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
        deadline = time.monotonic() + start_timeout
        while not ready.wait(0.2):
            assert process.poll() is None and time.monotonic() < deadline, "server did not start:\n" + "".join(output)
        banner = next(line for line in output if "ready:" in line)
        match = re.search(r"pids (\d+);", banner)
        assert match, banner
        yield Served(process, rest_port, grpc_port, int(match.group(1)), output)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def run_serve(repo: Path, *flags: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``ladle serve`` expected to stop by itself (a start-up error): its exit status and output."""
    ladle = Path(sys.executable).parent / "ladle"
    command = [str(ladle), "-c", str(repo), "serve", "--workers", "1", "--port", str(free_port()),
               "--grpc-port", str(free_port()), *flags]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
