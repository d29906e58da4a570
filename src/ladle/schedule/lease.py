"""A registry lease held for the length of a run, renewed in the background.

The lease is what keeps a schedule from overlapping itself when several schedulers share one
registry. It is renewed every third of its ttl, so a long run keeps it; if the process dies the
lease expires after ``ttl`` and another scheduler takes over.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import TracebackType

from ladle.errors import LadleError
from ladle.registry.base import LeaseRegistry

log = logging.getLogger(__name__)


class Lease:
    """Context manager: try to take ``name``; ``held`` says whether we got it.

    >>> with Lease(store.registry, "schedule:hourly", owner, timedelta(minutes=5)) as lease:
    ...     if lease.held:
    ...         run()
    """

    def __init__(self, registry: LeaseRegistry, name: str, owner: str, ttl: timedelta) -> None:
        self.registry = registry
        self.name = name
        self.owner = owner
        self.ttl_seconds = ttl.total_seconds()
        self.held = False
        self._lost = threading.Event()
        self._done = threading.Event()
        self._keeper: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease taken by someone else."""
        return self._lost.is_set()

    def __enter__(self) -> Lease:
        self.held = self.registry.acquire_lease(self.name, self.owner, self.ttl_seconds)
        if self.held:
            self._keeper = threading.Thread(target=self._renew, name=f"lease-{self.name}", daemon=True)
            self._keeper.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        if self._keeper is not None:
            self._keeper.join()
        if self.held and not self.lost:
            try:
                self.registry.release_lease(self.name, self.owner)
            except LadleError as error:
                # Not fatal: the lease expires by itself after its ttl.
                log.warning("could not release lease %s: %s (it expires in %.0f s)", self.name, error, self.ttl_seconds)

    def _renew(self) -> None:
        while not self._done.wait(self.ttl_seconds / 3):
            try:
                if not self.registry.renew_lease(self.name, self.owner, self.ttl_seconds):
                    log.error("lease %s was taken over by another scheduler; stopping after this run", self.name)
                    self._lost.set()
                    return
            except LadleError as error:
                log.warning("could not renew lease %s (%s); retrying", self.name, error)
