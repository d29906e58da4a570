"""The offline half of a flush, off the consume loop: files (or Iceberg) and dead letters on a worker thread.

Writing a second's accepted events to Parquet (or committing them to Iceberg) takes tens of
milliseconds; done on the consume loop, every event that arrives meanwhile waits for it, which is
what the p99 of event → online was made of. So the loop hands the buffered events over
(:meth:`Flusher.submit`) and goes on consuming, and one worker thread stores them and flushes the
dead-letter producer. The offsets stay the loop's business: it commits them only once it has
:meth:`reaped <Flusher.reap>` the job that stored everything before them, so the rule "an offset is
committed only past what is both online and in files" holds as before.

At most one job is in flight, so files of a partition are written in offset order. A failed job
is re-raised by :meth:`Flusher.reap` on the loop's thread, which then stops as on any failure (no
commit: the next owner replays from the last commit and truncates what the job left behind).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Job(Generic[T]):
    future: Future[None]
    then: T  # what the loop does once the job is stored (the offsets to commit)


@dataclass
class Flusher(Generic[T]):
    """One worker thread running one flush job at a time; the loop reaps each job's follow-up."""

    name: str = "ladle-stream-flush"
    _pool: ThreadPoolExecutor | None = None
    _job: _Job[T] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def busy(self) -> bool:
        """True while a job is in flight or done but not reaped."""
        return self._job is not None

    def submit(self, work: Callable[[], None], then: T) -> None:
        """Run ``work`` on the worker thread; :meth:`reap` hands ``then`` back once it finished.

        Only one job at a time: the caller reaps (or waits for) the previous one first.
        """
        if self._job is not None:
            raise RuntimeError("a flush job is still in flight; reap it first")
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
            self._job = _Job(self._pool.submit(work), then)

    def reap(self, wait: bool) -> T | None:
        """The finished job's ``then`` (None when none finished; with ``wait``, waits for the job in flight).

        Raises what the job raised.
        """
        job = self._job
        if job is None or (not wait and not job.future.done()):
            return None
        self._job = None
        job.future.result()
        return job.then

    def close(self) -> None:
        """Wait for the job in flight (its outcome is dropped) and stop the worker thread."""
        self._job = None
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
