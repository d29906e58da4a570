"""The feature log writer: a child process that turns logged requests into Arrow and writes them.

Each serving process (each ``ladle serve`` worker, or an SDK process) that logs starts one writer
with ``python -m ladle.monitor.feature_log_writer`` and talks to it over two pipes. Building the
tables and writing them happen here, under this process's own interpreter lock, so the serving
process pays only for encoding a frame (:class:`~ladle.monitor.feature_log.FeatureLogger`).

The protocol: frames of a 4-byte little-endian length and a pickle, parent to child on stdin —

* ``("config", RepoConfig)``: first, once;
* ``("target", n, service, DataSource, LogLayout)``: a logged service under one registry version;
* ``("shape", n, RecordShape)``: how the store records of one response shape map to columns;
* ``("batch", target, shape or None, Batch)``: requests of one service since the last hand-over
  (:class:`~ladle.monitor.feature_log_table.Batch`), as store records of a declared shape or as
  Python columns;
* ``("flush",)``: write everything now and answer;

and child to parent on stdout: ``("written", service, rows)`` and ``("requests", service, requests)``,
or ``("dropped", service, requests)``, after each write, then ``("cpu", "", microseconds)`` (the
writer's CPU since it started: the logger's CPU budget, :mod:`.feature_log_budget`), and
``("flushed", error or None)`` after a flush.
The writer keeps the batches it receives as they are and converts them when it writes — every
``flush_interval_secs``, or as soon as ``flush_requests`` requests wait — one table per service and
record shape whatever the number of batches. At end of input (the parent closed the pipe, or
died) it writes everything and exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from ladle.config import RepoConfig
from ladle.definitions import DataSource, DorisSource, FileSource
from ladle.monitor.feature_log_table import (
    REQUEST_ID,
    STATUS_SUFFIX,
    TIMESTAMP_SUFFIX,
    VARIANT,
    Batch,
    LogLayout,
    RecordShape,
    build_table,
    fits,
)

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore

log = logging.getLogger(__name__)

#: How often the writer checks whether a write is due.
TICK_SECONDS = 0.1
#: Pipe capacity asked of the kernel (Linux): what the serving process can hand over without waiting.
PIPE_BYTES = 1 << 20
_HEADER = 4
#: The writer's scheduling niceness (added to the serving process's): serving keeps a shared core.
NICENESS = 10


def frame(message: tuple[Any, ...]) -> bytes:
    """One protocol frame: the pickled ``message`` after its 4-byte little-endian length."""
    payload = pickle.dumps(message, protocol=5)
    return len(payload).to_bytes(_HEADER, "little") + payload


class WriterProcess:
    """The serving process's handle on its writer: start, send frames, flush, close."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self._in = process.stdin.fileno()
        self._out: IO[bytes] = process.stdout
        self._pending = bytearray()  # answers read but not yet whole

    @classmethod
    def start(cls, config: RepoConfig) -> WriterProcess:
        """Start a writer for ``config`` (its offline store and repo path)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "ladle.monitor.feature_log_writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        writer = cls(process)
        _grow_pipe(writer._in)
        os.set_blocking(writer._in, False)
        os.set_blocking(writer._out.fileno(), False)
        writer.send(bytearray(frame(("config", config))), wait=True)
        return writer

    def alive(self) -> bool:
        """Whether the writer is still running."""
        return self.process.poll() is None

    def returncode(self) -> int | None:
        """The writer's exit status, once it has exited."""
        return self.process.poll()

    def send(self, data: bytearray, wait: bool) -> int:
        """Write ``data`` to the writer's pipe: as much as fits now, or (``wait``) all of it.
        Returns the bytes written; 0 if the writer is gone."""
        view = memoryview(data)
        sent = 0
        try:
            while sent < len(view):
                try:
                    sent += os.write(self._in, view[sent : sent + PIPE_BYTES])
                except BlockingIOError:
                    if not wait:
                        break
                    select.select([], [self._in], [], 1.0)
        except (BrokenPipeError, OSError):
            pass
        finally:
            view.release()
        return sent

    def progress(self) -> list[tuple[str, str, int]]:
        """The writer's ``written``/``dropped`` reports received so far (never waits)."""
        events, _ = self._answers(until_flushed=False)
        return events

    def flush(self, timeout: float = 60.0) -> tuple[list[tuple[str, str, int]], str | None]:
        """Ask the writer to write everything it holds; wait for it. Returns its reports and the
        error of a failed write (None when all went well)."""
        if self.send(bytearray(frame(("flush",))), wait=True) == 0:
            return [], f"the writer exited with {self.returncode()}"
        return self._answers(until_flushed=True, timeout=timeout)

    def _answers(self, until_flushed: bool, timeout: float = 0.0) -> tuple[list[tuple[str, str, int]], str | None]:
        events: list[tuple[str, str, int]] = []
        deadline = time.monotonic() + timeout
        fd = self._out.fileno()
        while True:
            while len(self._pending) >= _HEADER:
                size = int.from_bytes(self._pending[:_HEADER], "little")
                if len(self._pending) < _HEADER + size:
                    break
                message = pickle.loads(self._pending[_HEADER : _HEADER + size])
                del self._pending[: _HEADER + size]
                if message[0] == "flushed":
                    return events, message[1]
                events.append(message)
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                return events, (f"the writer exited with {self.process.wait()}" if until_flushed else None)
            if chunk:
                self._pending += chunk
                continue
            left = deadline - time.monotonic()
            if not until_flushed:
                return events, None
            if left <= 0:
                return events, f"the writer did not answer within {timeout:g} s"
            select.select([fd], [], [], min(left, 1.0))

    def close(self, timeout: float = 60.0) -> list[tuple[str, str, int]]:
        """Flush, end the writer's input and wait for it to exit; returns its last reports."""
        events, error = self.flush(timeout)
        if error:
            log.error("feature log: %s", error)
        with contextlib.suppress(OSError):
            os.close(self._in)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._out.close()
        return events


def _grow_pipe(fd: int) -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):  # above the system's pipe-max-size: keep the default
            fcntl.fcntl(fd, set_size, PIPE_BYTES)


# -- the child -------------------------------------------------------------------------------------


class Writer:
    """The child's state: what the parent declared, what waits to be converted and written."""

    def __init__(self, config: RepoConfig, answer: IO[bytes]) -> None:
        self.config = config
        self.settings = config.feature_server.feature_logging
        self._answer = answer
        self._answer_lock = threading.Lock()
        self._offline: OfflineStore | None = None
        self.targets: dict[int, tuple[str, DataSource, LogLayout]] = {}
        self.shapes: dict[int, RecordShape] = {}
        self.received: dict[int, list[Batch]] = {}  # per target, not yet converted
        self.received_count = 0
        #: Converted, not yet written: per target, its tables and the number of requests in them.
        self.pending: dict[int, tuple[list[Any], list[int]]] = {}
        self.lock = threading.Lock()
        self.last_write = time.monotonic()

    def offline(self) -> OfflineStore:
        if self._offline is None:
            from ladle.offline.base import open_offline_store

            self._offline = open_offline_store(self.config)
        return self._offline

    def take(self, message: tuple[Any, ...]) -> None:
        """One frame from the parent."""
        kind = message[0]
        if kind == "target":
            self.targets[message[1]] = (message[2], message[3], message[4])
        elif kind == "shape":
            self.shapes[message[1]] = message[2]
        elif kind == "batch":
            _, target, shape, batch = message
            if target not in self.targets or (shape is not None and shape not in self.shapes):
                self.report(("dropped", "", len(batch)))  # declared to an earlier writer: cannot be placed
                return
            batch.shape = self.shapes[shape] if shape is not None else None
            self.received.setdefault(target, []).append(batch)
            self.received_count += len(batch)

    def convert(self) -> None:
        """Turn received requests into Arrow tables (called with the lock held)."""
        received, self.received = self.received, {}
        self.received_count = 0
        for target, batches in received.items():
            service, _, layout = self.targets[target]
            misfits = sum(len(b) for b in batches if not fits(layout, b))
            if misfits:
                log.error("feature log: %d requests of %s do not match its columns: dropped", misfits, service)
                self.report(("dropped", service, misfits))
            tables = self.pending.setdefault(target, ([], [0]))
            tables[0].append(build_table(layout, batches))
            requests = sum(map(len, batches)) - misfits
            tables[1][0] += requests

    def write(self) -> str | None:
        """Write the converted tables, one batch per service; returns the first error, if any."""
        import pyarrow as pa

        pending, self.pending = self.pending, {}
        self.last_write = time.monotonic()
        error: str | None = None
        for target, (tables, (requests,)) in pending.items():
            service, source, _ = self.targets[target]
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            if table.num_rows == 0:
                continue
            try:
                rows = write_log(self.offline(), self.config, source, table)
            except Exception as exc:  # the writer must survive a bad write; the requests are dropped
                log.exception("feature log write failed for %s", service)
                self.report(("dropped", service, requests))
                error = error or f"{type(exc).__name__}: {exc}"
                continue
            self.report(("written", service, rows))
            self.report(("requests", service, requests))
        if pending:
            self.report(("cpu", "", int(time.process_time() * 1_000_000)))
        return error

    def due(self) -> bool:
        return time.monotonic() - self.last_write >= self.settings.flush_interval_secs

    def report(self, message: tuple[Any, ...]) -> None:
        with self._answer_lock:
            try:
                self._answer.write(frame(message))
                self._answer.flush()
            except (BrokenPipeError, OSError):  # the parent is gone: nobody to tell
                pass


def _frames(stream: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    read = stream.read
    while True:
        header = read(_HEADER)
        if len(header) < _HEADER:
            return
        size = int.from_bytes(header, "little")
        payload = read(size)
        if len(payload) < size:
            return
        yield pickle.loads(payload)


def _ticker(writer: Writer, stop: threading.Event) -> None:
    """Convert and write on time even while the parent sends nothing."""
    while not stop.wait(TICK_SECONDS):
        with writer.lock:
            if writer.received and writer.due():
                writer.convert()
                writer.write()


def main() -> int:
    """Run a writer on stdin/stdout (the parent's pipes)."""
    logging.basicConfig(level=logging.INFO, format="ladle feature log writer: %(message)s")
    # Background work: when it competes with serving for a core, serving should win (docs/feature-logging.md, "Cost").
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    frames = _frames(sys.stdin.buffer)
    first = next(frames, None)
    if first is None or first[0] != "config":
        return 2
    writer = Writer(first[1], sys.stdout.buffer)
    stop = threading.Event()
    ticker = threading.Thread(target=_ticker, args=(writer, stop), daemon=True)
    ticker.start()
    for message in frames:
        with writer.lock:
            if message[0] == "flush":
                writer.convert()
                writer.report(("flushed", writer.write()))
                continue
            writer.take(message)
            if writer.received_count >= writer.settings.flush_requests:
                writer.convert()
                writer.write()
    stop.set()
    ticker.join()
    with writer.lock:
        writer.convert()
        writer.write()
    return 0


# -- writing ---------------------------------------------------------------------------------------


def _write_file(config: RepoConfig, source: FileSource, table: Any) -> int:
    import pyarrow.parquet as pq

    from ladle.offline.sources import SourceLocation

    root = SourceLocation.of(source, config.repo_path).root
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    final = root / f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = root / f".{final.name}.tmp"
    try:
        # Dictionary pages for the low-cardinality text columns and the event times (a view's features
        # share one per row, so its timestamp columns repeat); not for values, where they cost more
        # than they save. Measured per 100-row request, best of 7 (the W3c table): snappy with
        # dictionary event times 45.5 us, lz4 51.2, plain event times 58.8 (lz4); no compression 35-39 us
        # but 20-75 % larger files.
        # Statistics (row-group pruning) only for the columns logs are filtered by: id, time, variant, keys.
        low = [
            f.name
            for f in table.schema
            if f.name in (REQUEST_ID, VARIANT) or f.name.endswith((STATUS_SUFFIX, TIMESTAMP_SUFFIX))
        ]
        filtered = [f.name for f in table.schema if "__" not in f.name]
        pq.write_table(table, tmp, use_dictionary=low, write_statistics=filtered)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return int(table.num_rows)


def write_log(offline: OfflineStore, config: RepoConfig, source: DataSource, table: Any) -> int:
    """Append log rows to ``source``: its offline store's ``append`` (creating the table first on
    MySQL-protocol stores), or for Parquet one new file written directly.

    Parquet logs skip the DuckDB store's ``append`` on purpose: it reads the footer of every file
    already in the directory to conform types, a cost that grows with each flush, while log files
    all have their service's schema. The file is written the way ``append`` writes one (hidden
    temporary name, then an atomic rename), so readers see all of it or nothing.
    """
    if isinstance(source, FileSource):
        return _write_file(config, source, table)
    if isinstance(source, DorisSource):
        from ladle.monitor.feature_log_doris import ensure_table

        ensure_table(config, source, table.schema)
    return int(offline.append(source, table))


if __name__ == "__main__":
    sys.exit(main())
