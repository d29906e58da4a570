"""OpenLineage run events for Ladle's jobs: apply, ingest, materialize, stream, push, training-set retrieval.

Configured by the ``lineage:`` block of ``feature_store.yaml`` (off by default; docs/lineage.md)::

    lineage:
      transport: http                 # http | file | console
      url: http://marquez:5000
      endpoint: api/v1/lineage        # DataHub: openapi/openlineage/api/v1/lineage
      api_key: ${LINEAGE_TOKEN}

A job runs inside :meth:`Lineage.run`, which sends START on entry, COMPLETE on a normal exit and
FAIL (with the error message) when the body raises; the exception is re-raised unchanged::

    with store.lineage.run("materialize", inputs, outputs) as run:
        results = work()
        run.facts["rowsWritten"] = sum(r.rows_written for r in results)

Events are handed to a background thread that sends them through openlineage-python's transport,
so a slow or unreachable receiver never slows or fails the job: a failed send is logged and counted
in ``ladle_lineage_emit_failures_total``; a full queue drops the event and counts it the same way.
:meth:`Lineage.flush` waits for the queue to drain (the CLI does so at exit).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ladle.errors import MissingExtraError
from ladle.metrics import LINEAGE_EMIT_FAILURES, LINEAGE_EVENTS
from ladle.monitor.lineage_datasets import LineageDataset, LineageRun

__all__ = ["QUEUE_SIZE", "Lineage", "LineageDataset", "LineageRun"]

if TYPE_CHECKING:
    from ladle.config import LineageConfig, RepoConfig

log = logging.getLogger(__name__)

#: Events waiting to be sent; beyond this new events are dropped (and counted), never blocking a job.
QUEUE_SIZE = 10_000


class Lineage:
    """Sends OpenLineage run events for one project (a no-op when ``lineage.transport`` is unset)."""

    def __init__(self, config: RepoConfig) -> None:
        self.settings: LineageConfig = config.lineage
        self.project = config.project
        self.namespace = self.settings.namespace or f"ladle.{config.project}"
        self._file = None
        if self.settings.file is not None:
            from ladle.config import resolve_path

            self._file = str(resolve_path(config, self.settings.file))
        self._missing: str | None = None
        if self.settings.transport is not None:
            try:
                import openlineage.client  # noqa: F401
            except ImportError:
                # Lineage must never fail the job it describes: say so loudly once, then stay off.
                self._missing = str(MissingExtraError("lineage", "lineage", "openlineage-python"))
                LINEAGE_EMIT_FAILURES.labels(transport=str(self.settings.transport)).inc()
                log.error("lineage is configured but off: %s", self._missing)
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self._worker: threading.Thread | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when a transport is configured (and openlineage-python is installed)."""
        return self.settings.transport is not None and self._missing is None

    # -- runs --------------------------------------------------------------------------------
    @contextmanager
    def run(
        self,
        job: str,
        inputs: Iterable[LineageDataset] = (),
        outputs: Iterable[LineageDataset] = (),
        facts: Mapping[str, Any] | None = None,
    ) -> Iterator[LineageRun]:
        """START now, COMPLETE when the body returns, FAIL (then re-raise) when it raises.

        ``facts`` are known from the start (they are in every event); the body adds more to ``run.facts``.
        """
        run = LineageRun(job, inputs, outputs)
        run.facts.update(facts or {})
        if not self.enabled:
            yield run
            return
        self.emit(run, "START")
        try:
            yield run
        except BaseException as exc:
            self.emit(run, "FAIL", error=exc)
            raise
        self.emit(run, "COMPLETE")

    def emit(self, run: LineageRun, state: str, error: BaseException | None = None) -> None:
        """Queue one event of ``run`` (START, RUNNING, COMPLETE, FAIL, ABORT); never raises."""
        if not self.enabled:
            return
        # The event is built by the sender thread: the job's thread only copies the run's state.
        try:
            self._start_worker()
            self._queue.put_nowait((run.copy(), state, datetime.now(UTC), error))
        except queue.Full:
            LINEAGE_EMIT_FAILURES.labels(transport=str(self.settings.transport)).inc()
            log.warning("lineage: %d events wait to be sent; dropped the %s event of %s", QUEUE_SIZE, state, run.job)

    @contextmanager
    def heartbeat(
        self,
        run: LineageRun,
        interval: float | None = None,
        progress: Callable[[], Mapping[str, Any]] | None = None,
    ) -> Iterator[None]:
        """Send RUNNING for ``run`` every ``interval`` seconds (default ``running_interval_seconds``).

        ``progress`` (if given) is called before each RUNNING and on exit; what it returns joins ``run.facts``.
        """
        if not self.enabled:
            yield
            return
        every = interval if interval is not None else self.settings.running_interval_seconds
        stop = threading.Event()

        def update() -> None:
            if progress is not None:
                try:
                    run.facts.update(progress())
                except Exception as exc:  # progress is best effort, like every lineage fact
                    log.warning("lineage: progress of %s unavailable: %s", run.job, exc)

        def beat() -> None:
            while not stop.wait(every):
                update()
                self.emit(run, "RUNNING")

        thread = threading.Thread(target=beat, name="ladle-lineage-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            update()

    # -- sending -----------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was sent (or failed); False if ``timeout`` ran out first."""
        if self._worker is None:
            return True
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                return
            self._worker = threading.Thread(target=self._send_loop, name="ladle-lineage", daemon=True)
            self._worker.start()
            atexit.register(self.flush)

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._send(item)

    def _send(self, item: tuple[LineageRun, str, datetime, BaseException | None]) -> None:
        run, state, when, error = item
        transport = str(self.settings.transport)
        try:
            from ladle.monitor.lineage_events import build_event, open_client

            event = build_event(self.namespace, self.project, run, state, when, error)
            if self._client is None:
                self._client = open_client(self.settings, self._file)
            self._client.emit(event)
        except Exception as exc:
            LINEAGE_EMIT_FAILURES.labels(transport=transport).inc()
            log.warning("lineage: sending the %s event of %s failed: %s", state, run.job, exc)
            return
        LINEAGE_EVENTS.labels(event_type=state).inc()
