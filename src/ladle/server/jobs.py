"""Materialization requested over the API: one view at a time, in a small thread pool.

A view being materialized by this worker is claimed first, so a second request for it gets 409
at once (with ``?async=true`` too). Runs in other workers or processes are kept apart by the
materializer itself, whose :class:`~ladle.errors.MaterializationInProgressError` also maps to 409.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from ladle.security.principal import ANONYMOUS, Principal
from ladle.server.core import ServerCore

log = logging.getLogger(__name__)


class MaterializationJobs:
    """Runs materializations off the event loop."""

    def __init__(self, core: ServerCore, max_workers: int = 2) -> None:
        self.core = core
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ladle-materialize")

    def submit(
        self, views: Sequence[str], start: datetime | None, end: datetime, principal: Principal = ANONYMOUS
    ) -> Future[None]:
        """Claim ``views`` (raises if one is busy) and materialize them in the background as ``principal``."""
        self.core.claim(views)
        try:
            future = self._pool.submit(self.core.materialize, views, start, end, principal)
        except RuntimeError:
            self.core.release(views)
            raise
        future.add_done_callback(lambda f: _log_failure(f, views))
        return future

    def close(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait`` let running ones finish."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


def _log_failure(future: Future[None], views: Sequence[str]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("materialization of %s failed: %s", list(views), exc)
