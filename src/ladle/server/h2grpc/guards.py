"""What keeps one peer from exhausting a server: rate budgets and the server-wide byte account.

A :class:`Budget` is a token bucket (a burst of up to ``rate`` events, then ``rate`` per second)
that costs one subtraction per event while tokens last and one clock read when they run out, so
a long-lived connection that keeps under the rate is never cut. A :class:`Pool` is what all of a
server's connections share: the bytes they hold and a coarse clock the server's sweeper keeps
current (so stamping a stream costs an attribute read, not a clock read).
"""

from __future__ import annotations

import time


class Budget:
    """A token bucket: :meth:`spend` is False once more than ``rate`` events came in about a second.

    >>> budget = Budget(2)
    >>> budget.spend(), budget.spend(), budget.spend()
    (True, True, False)
    """

    __slots__ = ("rate", "stamp", "tokens")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = time.monotonic()

    def spend(self, cost: int = 1) -> bool:
        """Take ``cost`` tokens; False when too few are left even after refilling for the time gone by."""
        self.tokens -= cost
        if self.tokens >= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.rate - cost, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens >= 0


class Pool:
    """What a server's connections share: bytes held (requests waiting, responses blocked), a coarse clock."""

    __slots__ = ("held", "limit", "now")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.now = time.monotonic()  # refreshed by the server's sweeper (a tick or so behind)

    @property
    def full(self) -> bool:
        """Whether the server holds its budget's worth of bytes."""
        return self.held >= self.limit
