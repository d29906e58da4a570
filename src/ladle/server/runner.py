"""The supervisor behind ``ladle serve``: shared ports, N worker processes, metrics dir, signals.

* Every worker listens on the REST and gRPC ports itself with SO_REUSEPORT, so the kernel spreads
  connections evenly over the workers. The supervisor first *reserves* each port (bound with
  SO_REUSEPORT, never listening, so it gets no connections): a busy port fails at once, and port 0
  resolves to one free port that every worker then shares.
* Every run gets its own ``PROMETHEUS_MULTIPROC_DIR`` (set before any worker starts, removed at
  exit); a dead worker's live gauges are dropped while its counters keep counting.
* A worker that dies is replaced; one that fails while starting stops the whole server (a bad
  config or a busy port would otherwise respawn forever).
* SIGTERM / SIGINT: workers get SIGTERM, finish in-flight requests, and the supervisor exits 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType

from ladle.server.metrics import MULTIPROCESS_ENV
from ladle.server.settings import ServerSettings
from ladle.server.sockets import reuseport_socket
from ladle.server.worker import StoreSpec, payload

log = logging.getLogger(__name__)
_POLL_SECONDS = 0.2
_START_TIMEOUT_SECONDS = 120.0
_CRASH_LOOP_SECONDS = 2.0


class Supervisor:
    """Starts, watches and stops the workers of one ``ladle serve`` run."""

    def __init__(self, spec: StoreSpec, settings: ServerSettings, log_level: str = "WARNING") -> None:
        self.spec = spec
        self.settings = settings
        self.log_level = log_level
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        self._started: dict[int, float] = {}
        self._stopping = False
        self._reserved: list[socket.socket] = []
        self._reports, self._report_w = os.pipe()
        os.set_blocking(self._reports, False)
        self._pending = b""
        self.rest_port = 0
        self.grpc_port = 0

    def _reserve(self, port: int, what: str) -> int:
        # A plain bind first: it fails if anything listens there, even another server using
        # SO_REUSEPORT (which the reuseport bind below would silently share the port with).
        probe = reuseport_socket(self.settings.host, port, what, reuse_port=False)
        port = int(probe.getsockname()[1])
        probe.close()
        sock = reuseport_socket(self.settings.host, port, what)
        self._reserved.append(sock)
        return port

    def _spawn(self) -> None:
        settings = dataclasses.replace(self.settings, port=self.rest_port, grpc_port=self.grpc_port)
        args = payload(self.spec, settings, self._report_w, self.log_level)
        process = subprocess.Popen([sys.executable, "-m", "ladle.server.worker", args], pass_fds=(self._report_w,))
        self._workers[process.pid] = process
        self._started[process.pid] = time.monotonic()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _read_reports(self, timeout: float) -> list[list[str]]:
        ready, _, _ = select.select([self._reports], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                self._pending += os.read(self._reports, 65536)
        *lines, self._pending = self._pending.split(b"\n")
        return [line.decode().split(" ", 2) for line in lines if line]

    def _wait_until_ready(self) -> None:
        pending = set(self._workers)
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while pending and not self._stopping:
            for kind, pid, detail in self._read_reports(_POLL_SECONDS):
                if kind == "error":
                    raise RuntimeError(f"a worker failed to start: {detail}")
                pending.discard(int(pid))
            dead = [pid for pid in pending if self._workers[pid].poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"worker(s) {dead or sorted(pending)} did not start (see the log above)")

    def _replace_dead(self) -> None:
        from prometheus_client import multiprocess

        for kind, who, detail in self._read_reports(_POLL_SECONDS):
            if kind == "error":
                log.error("worker %s failed: %s", who, detail)
        for pid, process in list(self._workers.items()):
            if process.poll() is None:
                continue
            del self._workers[pid]
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
            log.error("worker %d exited with code %s; starting a new one", pid, process.returncode)
            if time.monotonic() - self._started.pop(pid) < _CRASH_LOOP_SECONDS:
                time.sleep(_CRASH_LOOP_SECONDS)  # a worker crashing at once would otherwise respawn in a tight loop
            self._spawn()

    def _stop_workers(self) -> None:
        for process in self._workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.graceful_timeout + 5
        for process in self._workers.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()

    def run(self, announce: Callable[[str], None] = print) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit status."""
        settings = self.settings
        metrics_dir = tempfile.mkdtemp(prefix="ladle-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.rest_port = self._reserve(settings.port, "REST") if settings.rest else 0
            self.grpc_port = self._reserve(settings.grpc_port, "gRPC") if settings.grpc else 0
            for _ in range(settings.workers):
                self._spawn()
            self._wait_until_ready()
            if self._stopping:
                return 0
            self._start_metrics_port()
            announce(self._banner(metrics_dir))
            while not self._stopping:
                self._replace_dead()
            return 0
        except (RuntimeError, OSError) as exc:
            log.error("%s", exc)
            return 1
        finally:
            self._stop_workers()
            for sock in self._reserved:
                sock.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._reports)
            os.close(self._report_w)
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop(MULTIPROCESS_ENV, None)

    def _start_metrics_port(self) -> None:
        if not self.settings.metrics_port:
            return
        from prometheus_client import start_http_server

        from ladle.monitor.report_metrics import watch_reports
        from ladle.server.metrics import scrape_registry
        from ladle.store import FeatureStore

        registry = scrape_registry()
        config = FeatureStore(repo_path=self.spec.repo_path, fs_yaml_file=self.spec.fs_yaml_file).config
        watch_reports(registry, config.registry, config.project, config.repo_path)  # as the workers' /metrics do
        start_http_server(self.settings.metrics_port, addr=self.settings.host, registry=registry)

    def _banner(self, metrics_dir: str) -> str:
        s = self.settings
        parts = []
        if s.rest:
            parts.append(f"REST {'https' if s.tls else 'http'}://{s.host}:{self.rest_port}")
        if s.grpc:
            parts.append(f"gRPC {s.host}:{self.grpc_port}" + (" (TLS)" if s.tls else ""))
        if s.metrics_port:
            parts.append(f"metrics http://{s.host}:{s.metrics_port}/metrics")
        pids = ",".join(str(p) for p in self._workers)
        return (
            f"Ladle feature server ready: {', '.join(parts)} "
            f"({s.workers} workers, pids {pids}; metrics dir {metrics_dir})"
        )


def serve(spec: StoreSpec, settings: ServerSettings, log_level: str = "WARNING") -> int:
    """Run the feature server in the foreground (``ladle serve``); returns the exit status."""
    return Supervisor(spec, settings, log_level).run(lambda line: print(line, flush=True))
