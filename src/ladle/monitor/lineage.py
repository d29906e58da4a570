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
import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ladle.errors import MissingExtraError
from ladle.metrics import LINEAGE_EMIT_FAILURES, LINEAGE_EVENTS

if TYPE_CHECKING:
    from ladle.config import LineageConfig, RepoConfig
    from ladle.monitor.lineage_datasets import LineageDataset

log = logging.getLogger(__name__)

#: ``producer`` of every event: which software wrote it (a URI, as the spec asks).
PRODUCER = "urn:ladle:0.1.0"
#: Where the Ladle run facet's JSON schema is described (shipped as ``lineage_facet.json``).
LADLE_FACET_SCHEMA = "urn:ladle:facets:LadleRunFacet:1-0-0"
#: Events waiting to be sent; beyond this new events are dropped (and counted), never blocking a job.
QUEUE_SIZE = 10_000

#: Job type shown by receivers (``jobType`` facet), by Ladle job name.
JOB_TYPES: Mapping[str, tuple[str, str]] = {
    "apply": ("BATCH", "APPLY"),
    "ingest": ("BATCH", "INGEST"),
    "materialize": ("BATCH", "MATERIALIZATION"),
    "stream": ("STREAMING", "STREAM"),
    "push": ("STREAMING", "PUSH"),
    "get_historical_features": ("BATCH", "TRAINING_SET"),
}


class LineageRun:
    """One run of a job: its id, datasets and the facts that go into the Ladle facet."""

    def __init__(self, job: str, inputs: Iterable[LineageDataset], outputs: Iterable[LineageDataset]) -> None:
        self.job = job
        self.run_id = str(uuid.uuid4())
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        #: Ladle facet fields, e.g. ``rowsWritten``, ``watermark``, ``viewVersions``
        self.facts: dict[str, Any] = {}
        #: rows written per output dataset name (the ``outputStatistics`` facet)
        self.rows: dict[str, int] = {}


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
        if self.enabled:
            try:
                import openlineage.client  # noqa: F401
            except ImportError:
                raise MissingExtraError("lineage", "lineage", "openlineage-python") from None
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self._worker: threading.Thread | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when a transport is configured."""
        return self.settings.transport is not None

    # -- runs --------------------------------------------------------------------------------
    @contextmanager
    def run(
        self,
        job: str,
        inputs: Iterable[LineageDataset] = (),
        outputs: Iterable[LineageDataset] = (),
    ) -> Iterator[LineageRun]:
        """START now, COMPLETE when the body returns, FAIL (then re-raise) when it raises."""
        run = LineageRun(job, inputs, outputs)
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
        try:
            from ladle.monitor.lineage_events import build_event

            event = build_event(self, run, state, datetime.now(UTC), error)
            self._start_worker()
            self._queue.put_nowait(event)
        except queue.Full:
            LINEAGE_EMIT_FAILURES.labels(transport=str(self.settings.transport)).inc()
            log.warning("lineage: %d events wait to be sent; dropped the %s event of %s", QUEUE_SIZE, state, run.job)
        except Exception as exc:
            LINEAGE_EMIT_FAILURES.labels(transport=str(self.settings.transport)).inc()
            log.warning("lineage: could not build the %s event of %s: %s", state, run.job, exc)

    @contextmanager
    def heartbeat(self, run: LineageRun, interval: float | None = None) -> Iterator[None]:
        """Send RUNNING for ``run`` every ``interval`` seconds (default ``running_interval_seconds``)."""
        if not self.enabled:
            yield
            return
        every = interval if interval is not None else self.settings.running_interval_seconds
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                self.emit(run, "RUNNING")

        thread = threading.Thread(target=beat, name="ladle-lineage-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

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

    def _send(self, event: Any) -> None:
        transport = str(self.settings.transport)
        try:
            if self._client is None:
                from ladle.monitor.lineage_events import open_client

                self._client = open_client(self.settings, self._file)
            self._client.emit(event)
        except Exception as exc:
            LINEAGE_EMIT_FAILURES.labels(transport=transport).inc()
            log.warning("lineage: sending a %s event of %s failed: %s", event.eventType.value, event.job.name, exc)
            return
        LINEAGE_EVENTS.labels(event_type=event.eventType.value).inc()


def error_text(error: BaseException) -> tuple[str, str]:
    """The message and the stack trace of a failed job, for the ``errorMessage`` facet."""
    message = f"{type(error).__name__}: {error}"
    return message, "".join(traceback.format_exception(error))
