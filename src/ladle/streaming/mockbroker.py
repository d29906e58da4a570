"""librdkafka's mock cluster as a local Kafka-protocol broker, hosted by a child process.

librdkafka (the C library under confluent-kafka) contains a Kafka broker of its own, the *mock
cluster*: the Kafka wire protocol served from memory by C threads, with consumer groups, offset
commits, idempotent and transactional producers. Any client connects to it with a plain
``bootstrap.servers``, from any process. :class:`MockBroker` starts ``python -m
ladle.streaming.mockbroker``, which creates one such cluster through librdkafka's C API
(``ctypes``, the library the installed confluent-kafka wheel ships), prints its address and serves
until its stdin closes or it gets SIGTERM.

What it is good for: a broker whose cost per fetch does not grow with the log (the benchmarks'
latency reference, bench/README.md W5). What it is not: durable or complete. Each partition keeps
at most 5 MB or 100,000 produced batches, dropping the oldest (a consumer further behind than that
skips ahead per ``auto.offset.reset``); a fetch returns at most one produced batch per partition,
and a fetch that finds nothing waits its whole ``fetch.wait.max.ms`` even when data arrives
meanwhile; CreateTopics, DeleteTopics and DescribeConfigs are not served, so topics come from
:meth:`MockBroker.create_topic` (any partition count) or from auto-creation (4 partitions, on the
first metadata request naming them).

>>> with MockBroker() as broker:
...     broker.create_topic("ticks", 1)
...     print(broker.bootstrap_servers)   # 127.0.0.1:<port>
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

from ladle.errors import BackendError, BackendUnavailableError

READY = "mock broker: "
_PRODUCER = 0  # rd_kafka_type_t RD_KAFKA_PRODUCER


def librdkafka_path() -> str:
    """The librdkafka the installed confluent-kafka uses (its wheel's copy, else the system's)."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(glob.glob(str(libs / "librdkafka*.so*")))
    if found:
        return found[0]
    system = ctypes.util.find_library("rdkafka")
    if system is None:
        raise BackendUnavailableError("librdkafka not found (neither in the confluent-kafka wheel nor on the system)")
    return system


class _Cluster:
    """One mock cluster inside this process (librdkafka's C API through ctypes)."""

    def __init__(self, brokers: int = 1) -> None:
        lib = ctypes.CDLL(librdkafka_path())
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_conf_set.restype = ctypes.c_int
        lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_size_t]  # fmt: skip
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_handle_mock_cluster.restype = ctypes.c_void_p
        lib.rd_kafka_handle_mock_cluster.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
        lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.rd_kafka_err2str.restype = ctypes.c_char_p
        lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
        self._lib = lib
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # the handle that owns the cluster is a producer that never produces
        if lib.rd_kafka_conf_set(conf, b"test.mock.num.brokers", str(brokers).encode(), errstr, 512) != 0:
            raise BackendUnavailableError(f"librdkafka mock cluster: {errstr.value.decode()}")
        self._rk = lib.rd_kafka_new(_PRODUCER, conf, errstr, 512)
        if not self._rk:
            raise BackendUnavailableError(f"librdkafka mock cluster: {errstr.value.decode()}")
        self._cluster = lib.rd_kafka_handle_mock_cluster(self._rk)
        if not self._cluster:
            raise BackendUnavailableError("librdkafka mock cluster: not created (test.mock.num.brokers ignored)")
        self.bootstrap_servers = lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()

    def create_topic(self, name: str, partitions: int) -> str | None:
        """Create a topic; None when done, else librdkafka's error text."""
        err = self._lib.rd_kafka_mock_topic_create(self._cluster, name.encode(), partitions, 1)
        return None if err == 0 else self._lib.rd_kafka_err2str(err).decode()


def serve(inp: IO[str], out: IO[str]) -> int:
    """The child's loop: print the address, then answer ``topic NAME PARTITIONS`` lines with
    ``ok`` or ``error TEXT`` until ``inp`` closes or SIGTERM/SIGINT."""
    cluster = _Cluster()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # out of the blocking read below

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"{READY}{cluster.bootstrap_servers}", file=out, flush=True)
    for line in inp:
        words = line.split()
        if len(words) == 3 and words[0] == "topic" and words[2].isdigit():
            err = cluster.create_topic(words[1], int(words[2]))
            print("ok" if err is None else f"error {err}", file=out, flush=True)
        elif words:
            print(f"error unknown command {words[0]!r}", file=out, flush=True)
    return 0


class MockBroker:
    """A librdkafka mock cluster (one broker) in a child process, on 127.0.0.1."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._servers = ""
        self._lock = threading.Lock()

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return self._servers

    @property
    def pid(self) -> int | None:
        """The hosting process's id while it runs (benchmarks meter its CPU)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 15.0) -> MockBroker:
        """Start the hosting process and wait for its address."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ladle.streaming.mockbroker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line.startswith(READY):
            self.stop()
            raise BackendUnavailableError(f"the mock broker did not start: {line.strip() or 'no output'}")
        self._servers = line[len(READY) :].strip()
        return self

    def create_topic(self, name: str, partitions: int) -> None:
        """Create ``name`` with ``partitions`` partitions; BackendError if it exists or the broker refuses."""
        if self._proc is None or self._proc.stdin is None or self._proc.stdout is None:
            raise BackendUnavailableError("the mock broker is not running")
        with self._lock:
            self._proc.stdin.write(f"topic {name} {partitions}\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline().strip()
        if answer != "ok":
            raise BackendError(f"mock broker: cannot create topic {name}: {answer or 'no answer'}")

    def stop(self) -> None:
        """Stop the hosting process (its topics are gone)."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> MockBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(serve(sys.stdin, sys.stdout))
