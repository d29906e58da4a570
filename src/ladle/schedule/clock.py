"""The scheduler's notion of time, injectable so tests run a simulated day without sleeping.

:class:`SystemClock` is wall time; :class:`ManualClock` is a simulated clock whose
``sleep_until`` jumps straight to the wake-up time (and never goes backwards).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ladle.times import as_utc

# A sleeping scheduler re-reads the wall clock at least this often, so a clock step (NTP, a laptop
# waking from suspend) delays a fire by at most this much.
_MAX_NAP_SECONDS = 30.0


class Clock(Protocol):
    """What the scheduler needs from a clock."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...

    def sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Block until ``moment``; return False early if ``stop`` is set."""
        ...


class SystemClock:
    """Wall-clock time; sleeping wakes at once when ``stop`` is set (e.g. by SIGTERM)."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Wait on ``stop`` until ``moment`` arrives or ``stop`` is set."""
        target = as_utc(moment)
        while not stop.is_set():
            remaining = (target - self.now()).total_seconds()
            if remaining <= 0:
                return True
            stop.wait(min(remaining, _MAX_NAP_SECONDS))
        return False


class ManualClock:
    """A simulated clock for tests and dry runs: ``sleep_until`` advances time instantly.

    Thread-safe, so several schedulers can share one simulated timeline.

    >>> clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> clock.advance(timedelta(hours=1))
    datetime.datetime(2026, 1, 1, 1, 0, tzinfo=datetime.timezone.utc)
    """

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The simulated current time."""
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> datetime:
        """Jump to ``moment`` (forwards or backwards) and return it."""
        with self._lock:
            self._now = as_utc(moment)
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new time."""
        with self._lock:
            self._now += delta
            return self._now

    def sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Jump forward to ``moment`` unless ``stop`` is set; time never goes backwards here."""
        if stop.is_set():
            return False
        with self._lock:
            self._now = max(self._now, as_utc(moment))
        return True
