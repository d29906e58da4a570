"""The reader-side snapshot cache: a TTL, refreshed lazily (``sync``) or in the background (``thread``).

A refresh first asks the database for the project's version number (one tiny query) and reloads
the definitions only when it moved. In ``thread`` mode requests never wait for the database once
the first snapshot is loaded; a failed refresh keeps serving the last good snapshot and logs why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from ladle.errors import LadleError
from ladle.registry.base import RegistrySnapshot

log = logging.getLogger(__name__)


class SnapshotCache:
    """Holds the newest loaded :class:`RegistrySnapshot` of one project."""

    def __init__(
        self,
        ttl_seconds: float,
        mode: Literal["sync", "thread"],
        probe: Callable[[], int],
        load: Callable[[], RegistrySnapshot],
    ) -> None:
        self.ttl = ttl_seconds
        self.mode = mode
        self._probe = probe
        self._load = load
        self._snapshot: RegistrySnapshot | None = None
        self._checked_at = 0.0
        # Bumped by every put(); a background load started before a put() must not overwrite it.
        self._generation = 0
        self._lock = threading.Lock()
        self._first_load = threading.Lock()
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, allow_cache: bool = True) -> RegistrySnapshot:
        """The cached snapshot, loading or refreshing it as the mode and ttl say."""
        if not allow_cache:
            snapshot = self._load()
            self.put(snapshot)
            return snapshot
        current = self._snapshot
        if current is None:
            current = self._load_first()
        if self.mode == "thread":
            if self._thread is None and self.ttl > 0 and not self._stop.is_set():
                self._ensure_thread()
            return current
        if self.mode == "sync" and self.ttl > 0 and time.monotonic() - self._checked_at >= self.ttl:
            # Only one caller pays for the refresh; concurrent callers keep the current snapshot.
            if self._refreshing.acquire(blocking=False):
                try:
                    self.refresh()
                finally:
                    self._refreshing.release()
            return self._snapshot or current
        return current

    def put(self, snapshot: RegistrySnapshot) -> None:
        """Replace the cached snapshot (after a write through this process, or a forced reload)."""
        with self._lock:
            self._snapshot = snapshot
            self._generation += 1
            self._checked_at = time.monotonic()

    def refresh(self) -> None:
        """Reload if the project version moved; on failure keep the old snapshot and log."""
        generation = self._generation
        try:
            current = self._snapshot
            if current is not None and self._probe() == current.version:
                self._checked_at = time.monotonic()
                return
            snapshot = self._load()
        except LadleError as exc:
            log.warning("registry refresh failed, serving the cached definitions: %s", exc)
            self._checked_at = time.monotonic()
            return
        with self._lock:
            if self._generation == generation:
                self._snapshot = snapshot
                self._generation += 1
            self._checked_at = time.monotonic()

    def after_fork(self) -> None:
        """In a forked child: the refresher thread did not survive; start a new one on next use."""
        self._lock = threading.Lock()
        self._first_load = threading.Lock()
        self._refreshing = threading.Lock()
        self._thread = None

    def close(self) -> None:
        """Stop the background refresher, if any."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _load_first(self) -> RegistrySnapshot:
        with self._first_load:
            if self._snapshot is None:
                self.put(self._load())
            snapshot = self._snapshot
            assert snapshot is not None
            return snapshot

    def _ensure_thread(self) -> None:
        # Started on first use rather than at construction, so that one-shot CLI commands that never
        # read twice, and forked children, get a refresher only when they need one.
        with self._first_load:
            if self._thread is None and self.ttl > 0 and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="ladle-registry-refresh", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl):
            self.refresh()
