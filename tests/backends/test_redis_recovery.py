"""A Redis crash (kill -9) and restart under a stream of writes: no lost acknowledged write, and the
same RedisOnlineStore instance carries on without a process restart.

The test runs its own redis-server on a free port with an fsync-always append-only file, so a write
the server acknowledged is on disk before the store returns.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import redis

from ladle.config import load_config
from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.errors import BackendUnavailableError
from ladle.online.base import ReadRequest
from ladle.online.redis.store import RedisOnlineStore
from ladle.types import Float64, String

pytestmark = pytest.mark.redis

PROJECT = "recovery"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
BATCH = 200
VIEW = FeatureView(
    name="prices",
    source=FileSource(path="ticks.parquet", timestamp_field="event_timestamp"),
    entities=[Entity(name="commodity", join_keys=["code"], value_type=String)],
    schema=[Field(name="price", dtype=Float64)],
)


class OwnRedis:
    """A redis-server subprocess with an fsync-always AOF in ``workdir``, restartable on its port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("SERVICE DOWN: redis-server is not on PATH")
    own = OwnRedis(tmp_path)
    own.start()
    yield own
    own.stop()


def batch(i: int) -> pa.Table:
    codes = [f"B{i:05d}_{j:03d}" for j in range(BATCH)]
    return pa.table(
        {
            "code": codes,
            "event_timestamp": pa.array([T0 + timedelta(seconds=i)] * BATCH, pa.timestamp("us", tz="UTC")),
            "price": [float(i * 1000 + j) for j in range(BATCH)],
        }
    )


class StreamingWriter(threading.Thread):
    """Writes batch 0, 1, 2, ... through one store until stopped; records what was acknowledged."""

    def __init__(self, store: RedisOnlineStore) -> None:
        super().__init__()
        self.store = store
        self.acknowledged: list[int] = []
        self.after_restart: list[int] = []
        self.failures: list[BackendUnavailableError] = []
        self.restarted = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            try:
                self.store.write(PROJECT, VIEW, batch(i))
            except BackendUnavailableError as exc:
                self.failures.append(exc)
                time.sleep(0.01)
            else:
                self.acknowledged.append(i)
                if self.restarted.is_set():
                    self.after_restart.append(i)
            i += 1


@pytest.mark.timeout(120)
def test_acknowledged_writes_survive_kill_9_and_the_same_client_recovers(server: OwnRedis) -> None:
    block = {"type": "redis", "connection_string": f"127.0.0.1:{server.port}", "connect_timeout_seconds": 0.5}
    store = RedisOnlineStore(load_config({"project": PROJECT, "online_store": block}))
    writer = StreamingWriter(store)
    writer.start()
    try:
        _wait_for(lambda: len(writer.acknowledged) >= 20, "writes before the crash")
        server.kill()  # mid-stream: the writer is somewhere inside a write
        _wait_for(lambda: len(writer.failures) >= 3, "writes failing while the server is down")
        server.start()  # same port, same directory: the AOF is replayed
        writer.restarted.set()
        _wait_for(lambda: len(writer.after_restart) >= 20, "writes after the restart")
    finally:
        writer.stopped.set()
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert all(f"127.0.0.1:{server.port}" in str(exc) for exc in writer.failures)

    # Every acknowledged batch is there, with its values, read by the same client instance.
    codes = [f"B{i:05d}_{j:03d}" for i in writer.acknowledged for j in range(BATCH)]
    rows = store.read(PROJECT, [ReadRequest(VIEW, ["price"], {"code": codes})])[0]
    expected = [float(i * 1000 + j) for i in writer.acknowledged for j in range(BATCH)]
    assert rows.values["price"] == expected
    assert None not in rows.event_ts

    # A restart while the client is idle: its pooled connections are dead, the next call reconnects.
    server.kill()
    server.start()
    assert store.write(PROJECT, VIEW, batch(99_999)) == BATCH
    again = store.read(PROJECT, [ReadRequest(VIEW, ["price"], {"code": ["B99999_007", codes[0]]})])[0]
    assert again.values["price"] == [99_999_007.0, expected[0]]
    store.close()


def _wait_for(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
