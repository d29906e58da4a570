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
* the writer's cost: it reports its CPU, and the requests and rows it wrote, after each write, so
  the CPU it spends per request and per row is known — a least-squares fit of ``cpu = a * requests
  + b * rows`` over the last :data:`PRICES_KEPT` priced writes, times the requests and rows logged in
  the window. Per request *and* per row because a one-entity request costs the writer several
  microseconds (its id, time, rate and key, a frame's share) however few its rows: priced per row
  alone, as the first version did, it cost five to twenty times what was counted (measured at W3b,
  docs/feature-logging.md, "Cost"). When every write had the same rows per request the two cannot
  be told apart and the whole cost goes per request (exact for that mix). A write is priced when it
  holds at least :data:`PRICED_REQUESTS` requests or :data:`PRICED_ROWS` rows, so that a small
  write's fixed cost (a file, a footer) cannot pass for a cost per request, lower the rate, make the
  next writes smaller still, and so on down; in a priced write the fixed cost is spread over its
  requests (it is real CPU, one write per ``flush_interval_secs``). Requests and rows, not the
  writer's CPU of the window itself, because the writer works up to ``flush_interval_secs`` after
  the requests it writes arrived;
* the indirect cost: :data:`INDIRECT_SECONDS` per logged request, a measured constant. Logging
  also makes the serving process's *other* work dearer — its reads and writes to sockets wake
  peers at a higher cost, its interpreter refills caches after the hand-over and the writer ran,
  objects a batch keeps alive are allocated and freed later — none of which any part of logging
  can time for itself: in the W3 benchmark the workers' CPU per logged one-entity request rose by
  11-30 us more than everything above (docs/feature-logging.md, "Cost"), about the same for a
  100-entity request (it does not grow with the rows).

Then ``share = logging CPU / window length``; above the budget the factor shrinks in proportion
(at most 4x per window), below 80 % of it the factor grows (at most 2x per window, never above 1).
A window where nothing was logged leaves the factor as it is.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

#: Length of a measurement window.
WINDOW_SECONDS = 1.0
#: One logged request in this many has its request-path cost timed.
TIMED_EVERY = 32
#: Requests, or rows, a write must hold for its CPU to be priced.
PRICED_REQUESTS = 500
PRICED_ROWS = 5000
#: Priced writes the writer's cost per request and per row is fitted on (the newest).
PRICES_KEPT = 6
#: The serving process's CPU per logged request that no part of logging sees (the indirect cost,
#: measured: docs/feature-logging.md, "Cost").
INDIRECT_SECONDS = 20e-6
#: The smallest factor: logging never stops entirely.
MIN_SCALE = 1e-4
_SHRINK_AT_MOST = 4.0
_GROW_AT_MOST = 2.0
_GROW_BELOW = 0.8


class CostBudget:
    """Measures feature logging's CPU and sets the common factor on the sample rates.

    ``share``: the budget, a share of one core; None: no budget (the factor stays 1.0; the cost is
    still measured, for the metric). ``indirect``: CPU seconds priced per logged request on top of
    what is measured (:data:`INDIRECT_SECONDS`).
    The request path calls :meth:`logged` (and :meth:`timed` for the requests it timed), the
    writer's reports reach :meth:`writer_cpu`, and the shipper thread calls :meth:`tick` about
    every 50 ms with its own CPU time so far. Not thread-safe by itself: the logger calls every
    method under its own lock (counting is a few additions; :attr:`scale` is read without it).
    """

    def __init__(
        self, share: float | None, clock: Callable[[], float] = time.monotonic, indirect: float = INDIRECT_SECONDS
    ) -> None:
        self.share = share
        self.indirect = indirect
        self.scale = 1.0
        #: The last window's measured share of a core taken by logging, None before the first.
        self.measured: float | None = None
        self._clock = clock
        self._requests = 0  # logged in the window
        self._rows = 0
        self._timed_ns = 0  # request-path time of the timed requests, all windows
        self._timed = 0
        #: The writer's CPU seconds per request and per row written (None until a write was priced).
        self.writer_price: tuple[float, float] | None = None
        self._priced: deque[tuple[float, int, int]] = deque(maxlen=PRICES_KEPT)  # (cpu, requests, rows) per write
        #: Writer CPU, requests and rows written at its last report.
        self._writer: tuple[float, int, int] | None = None
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

    def writer_cpu(self, cpu_seconds: float, requests_written: int, rows_written: int) -> None:
        """A writer report after a write: its CPU since it started, and the requests and rows it
        has written so far."""
        last, self._writer = self._writer, (cpu_seconds, requests_written, rows_written)
        if last is None or cpu_seconds < last[0] or requests_written < last[1] or rows_written < last[2]:
            return  # the first report (of this writer): a baseline
        requests, rows = requests_written - last[1], rows_written - last[2]
        if requests < PRICED_REQUESTS and rows < PRICED_ROWS:
            return  # a small write: mostly its fixed cost
        self._priced.append((cpu_seconds - last[0], requests, rows))
        self.writer_price = fit_price(self._priced)

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
        price = self.writer_price
        if not requests or price is None:
            return False
        writer = requests * price[0] + rows * price[1]
        self.measured = share = (requests * (per_request + self.indirect) + shipper + writer) / elapsed
        if self.share is None:
            return True
        old = self.scale
        if share > self.share:
            self.scale = max(MIN_SCALE, old * max(1 / _SHRINK_AT_MOST, self.share / share))
        elif old < 1.0 and share < _GROW_BELOW * self.share:
            self.scale = min(1.0, old * (min(_GROW_AT_MOST, self.share / share) if share > 0 else _GROW_AT_MOST))
        return True


def fit_price(writes: Sequence[tuple[float, int, int]]) -> tuple[float, float]:
    """CPU seconds per request and per row that best explain ``writes`` (each its CPU, requests and
    rows): least squares, both prices at least zero; all per request when the writes cannot tell
    the two apart (the same rows per request in each)."""
    qq = sum(q * q for _, q, _ in writes)
    ww = sum(w * w for _, _, w in writes)
    qw = sum(q * w for _, q, w in writes)
    qc = sum(q * c for c, q, _ in writes)
    wc = sum(w * c for c, _, w in writes)
    det = qq * ww - qw * qw
    if qq and det > 1e-6 * qq * ww:
        per_request, per_row = (qc * ww - wc * qw) / det, (wc * qq - qc * qw) / det
        if per_request >= 0 and per_row >= 0:
            return per_request, per_row
        if per_row < 0:
            return qc / qq, 0.0
        return 0.0, wc / ww
    if qq:
        return sum(c for c, _, _ in writes) / sum(q for _, q, _ in writes), 0.0
    return 0.0, 0.0
