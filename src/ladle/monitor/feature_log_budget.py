"""The feature log's CPU budget: scale the sample rates so logging stays a bounded share of a core.

Logging a request costs CPU twice: in the serving process (the request's sampling decision and
its append to a batch, the shipper thread's hand-over) and in the log writer process (building the
Arrow table, encoding Parquet). When every core is busy serving, that CPU is taken from reads. With
``feature_server.feature_logging.cpu_budget`` set (the default, 0.02), each serving process keeps
the measured CPU of its logging — its own part and its writer's — at or under that share of one
core, by multiplying every logged service's ``sample_rate`` by one common factor,
:attr:`CostBudget.scale`. Under light traffic logging costs little and the factor stays 1.0: every
request the services ask to log is logged. Under heavy traffic the factor falls so that logging
takes at most the budget. Each logged row carries the rate it was sampled at (the ``sample_rate``
column), so a training set built from the log can weight rows by its inverse.
docs/feature-logging.md, "The CPU budget".

The measurement, once per :data:`WINDOW_SECONDS`:

* the request path's cost: one logged request in :data:`TIMED_EVERY` is timed, the mean times the
  requests logged in the window;
* the shipper thread's own CPU in the window;
* the writer's cost: it reports its CPU after each write, so the CPU it spends per row written is
  known (a moving average over writes of at least :data:`PRICED_ROWS` rows: in a small write the
  fixed cost of a write — a file, a footer — would pass for a cost per row, lower the rate, make
  the next writes smaller still, and so on down); times the rows logged in the window. The fixed
  cost itself is not counted: one write per ``flush_interval_secs`` (5 s by default) whatever the
  rate, a few milliseconds each. Rows, not the writer's CPU of the window itself, because the
  writer works up to ``flush_interval_secs`` after the requests it writes arrived.

Then ``share = logging CPU / window length``; above the budget the factor shrinks in proportion
(at most 4x per window), below 80 % of it the factor grows (at most 2x per window, never above 1).
A window where nothing was logged leaves the factor as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Length of a measurement window.
WINDOW_SECONDS = 1.0
#: One logged request in this many has its request-path cost timed.
TIMED_EVERY = 32
#: Rows a write must hold for its CPU to price a row.
PRICED_ROWS = 5000
#: The smallest factor: logging never stops entirely.
MIN_SCALE = 1e-4
_SHRINK_AT_MOST = 4.0
_GROW_AT_MOST = 2.0
_GROW_BELOW = 0.8
_SMOOTHING = 0.5  # weight of the newest per-row writer cost in its moving average


class CostBudget:
    """Measures feature logging's CPU and sets the common factor on the sample rates.

    ``share``: the budget, a share of one core; None: no budget (the factor stays 1.0; the cost is
    still measured, for the metric).
    The request path calls :meth:`logged` (and :meth:`timed` for the requests it timed), the
    writer's reports reach :meth:`writer_cpu`, and the shipper thread calls :meth:`tick` about
    every 50 ms with its own CPU time so far. Not thread-safe by itself: the logger calls every
    method under its own lock (counting is a few additions; :attr:`scale` is read without it).
    """

    def __init__(self, share: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self.scale = 1.0
        #: The last window's measured share of a core taken by logging, None before the first.
        self.measured: float | None = None
        self._clock = clock
        self._requests = 0  # logged in the window
        self._rows = 0
        self._timed_ns = 0  # request-path time of the timed requests, all windows
        self._timed = 0
        self._row_cost: float | None = None  # writer CPU seconds per row written
        self._writer: tuple[float, int] | None = None  # writer CPU and rows written at its last report
        self._start = clock()
        self._shipper_cpu = 0.0

    def logged(self, rows: int) -> bool:
        """Count one logged request of ``rows`` rows; True when the caller should time it."""
        self._requests += 1
        self._rows += rows
        return self._requests % TIMED_EVERY == 1

    def timed(self, nanoseconds: int) -> None:
        """The request-path time of one timed logged request."""
        self._timed_ns += nanoseconds
        self._timed += 1

    def writer_started(self) -> None:
        """A new writer replaced the last: its next report is a baseline (its CPU restarts from zero)."""
        self._writer = None

    def writer_cpu(self, cpu_seconds: float, rows_written: int) -> None:
        """A writer report after a write: its CPU since it started, and the rows written so far."""
        last, self._writer = self._writer, (cpu_seconds, rows_written)
        if last is None or cpu_seconds < last[0] or rows_written < last[1]:
            return  # the first report (of this writer): a baseline
        if rows_written - last[1] < PRICED_ROWS:
            return  # a small write: mostly its fixed cost
        cost = (cpu_seconds - last[0]) / (rows_written - last[1])
        old = self._row_cost
        self._row_cost = cost if old is None else old + _SMOOTHING * (cost - old)

    def tick(self, shipper_cpu: float) -> bool:
        """Close the window if it is over; True when it closed with a measurement (:attr:`measured`
        and perhaps :attr:`scale` changed)."""
        now = self._clock()
        elapsed = now - self._start
        if elapsed < WINDOW_SECONDS:
            return False
        shipper = shipper_cpu - self._shipper_cpu
        requests, rows = self._requests, self._rows
        self._requests = self._rows = 0
        self._start, self._shipper_cpu = now, shipper_cpu
        per_request = self._timed_ns / self._timed / 1e9 if self._timed else 0.0
        row_cost = self._row_cost
        if not requests or row_cost is None:
            return False
        self.measured = share = (requests * per_request + shipper + rows * row_cost) / elapsed
        if self.share is None:
            return True
        old = self.scale
        if share > self.share:
            self.scale = max(MIN_SCALE, old * max(1 / _SHRINK_AT_MOST, self.share / share))
        elif old < 1.0 and share < _GROW_BELOW * self.share:
            self.scale = min(1.0, old * (min(_GROW_AT_MOST, self.share / share) if share > 0 else _GROW_AT_MOST))
        return True
