"""The feature log's CPU budget: scale the sample rates so logging stays a bounded share of a core.

Logging a request costs CPU twice: in the serving process (the request's sampling decision and
its append to a batch, the shipper thread's hand-over) and in the log writer process (building the
Arrow table, encoding Parquet). When every core is busy serving, that CPU is taken from reads. With
``feature_server.feature_logging.cpu_budget`` set (the default, 0.01), each serving process keeps
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
  its CPU per write, per request and per row is known — a least-squares fit of ``cpu = fixed +
  a * requests + b * rows`` (each at least zero) over its last :data:`PRICES_KEPT` writes. The
  window is charged ``a`` and ``b`` for the requests and rows logged in it, and ``fixed`` once per
  ``flush_interval_secs`` (the writes happen that often while anything is logged; more often only
  when ``flush_requests`` requests wait, writes so large that their fixed part is a small share). Per request
  *and* per row because a one-entity request costs the writer several microseconds however few its
  rows (priced per row alone, as the first version did, it cost five to twenty times what was
  counted: docs/feature-logging.md, "Cost"). A fixed cost per write (a file, a Parquet footer, the
  writer waking up: 1.3-2 ms measured) because every write is priced, small ones included: spread
  over a small write's requests it would pass for a cost per request, lower the rate, make the
  next writes smaller and dearer per request still, and so on down. When the writes cannot tell
  the parts apart (one write, or writes all of one size) the cost goes per request and per row; the
  next write of another size separates them. Until two of the writer's writes have been priced (its
  first report is a baseline: three writes), a measured prior (:data:`PRIOR_WRITER_PRICE`) stands
  in, so the budget holds from the first window of a process's life. Requests and rows, not the
  writer's CPU of the window itself, because the writer works up to ``flush_interval_secs`` after
  the requests it writes arrived;
* the indirect cost: :data:`INDIRECT_SECONDS` per logged request, a measured constant. Logging
  also makes the serving process's *other* work dearer — its reads and writes to sockets wake
  peers at a higher cost, its interpreter refills caches after the hand-over and the writer ran,
  objects a batch keeps alive are allocated and freed later — none of which any part of logging
  can time for itself: in the W3 benchmark the workers' CPU per logged one-entity request rose by
  11-30 us more than everything above in the first measurements, 30-100 us in ten W3a runs of
  2026-12-07 (median 65 us in all, of which ~15 us the parts above; docs/feature-logging.md,
  "Cost"); it does not grow with the rows.

Then ``share = logging CPU / window length``. The writer's fixed part, ``fixed / flush_interval_secs``,
is paid as long as anything at all is logged, so the factor cannot reduce it: the factor is set on
the rest, against what the fixed part leaves of the budget, and at least half the budget (so a
short ``flush_interval_secs`` whose writes alone take the budget does not stop logging: it costs
the fixed part beyond half the budget, a price of the interval chosen). Above that allowance the
factor shrinks in proportion (at most 4x per window), below 80 % of it the factor grows (at most 2x
per window, never above 1). A window where nothing was logged leaves the factor as it is.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

#: Length of a measurement window.
WINDOW_SECONDS = 1.0
#: One logged request in this many has its request-path cost timed.
TIMED_EVERY = 32
#: Writes the writer's cost per write, per request and per row is fitted on (the newest).
PRICES_KEPT = 8
#: The share of the budget the part the factor controls always gets, however much the fixed part takes.
VARIABLE_AT_LEAST = 0.5
#: The serving process's CPU per logged request that no part of logging sees (the indirect cost,
#: measured: docs/feature-logging.md, "Cost").
INDIRECT_SECONDS = 50e-6
#: The writer's price (CPU seconds per write, per request, per row) until its own writes have priced
#: it: measured on the benchmark's 2-vCPU VM (docs/feature-logging.md, "Cost": 1.3 ms per write,
#: 3.7 us per one-entity request, 45-57 us per 100-entity request). Without it the budget would wait
#: for the writer's second write (two flush intervals, 10 s by default) and log every sampled
#: request of a fresh process until then.
PRIOR_WRITER_PRICE = (1.3e-3, 4e-6, 0.5e-6)
#: The prior stands until this many writes are priced: one write cannot tell its fixed cost from its
#: requests', and a small one (the leftovers of a burst) priced all per request would cut the rate
#: to a hundredth for tens of seconds.
PRIOR_UNTIL_WRITES = 2
#: The smallest factor: logging never stops entirely.
MIN_SCALE = 1e-4
_SHRINK_AT_MOST = 4.0
_GROW_AT_MOST = 2.0
_GROW_BELOW = 0.8


class CostBudget:
    """Measures feature logging's CPU and sets the common factor on the sample rates.

    ``share``: the budget, a share of one core; None: no budget (the factor stays 1.0; the cost is
    still measured, for the metric). ``indirect``: CPU seconds priced per logged request on top of
    what is measured (:data:`INDIRECT_SECONDS`). ``flush_interval``: the writer's
    ``flush_interval_secs`` (its fixed cost per write is charged that often). ``prior``: the
    writer's price until its writes have priced it (:data:`PRIOR_WRITER_PRICE`).
    The request path calls :meth:`logged` (and :meth:`timed` for the requests it timed), the
    writer's reports reach :meth:`writer_cpu`, and the shipper thread calls :meth:`tick` about
    every 50 ms with its own CPU time so far. Not thread-safe by itself: the logger calls every
    method under its own lock (counting is a few additions; :attr:`scale` is read without it).
    """

    def __init__(
        self,
        share: float | None,
        clock: Callable[[], float] = time.monotonic,
        indirect: float = INDIRECT_SECONDS,
        flush_interval: float = 5.0,
        prior: tuple[float, float, float] | None = PRIOR_WRITER_PRICE,
    ) -> None:
        self.share = share
        #: The writer's price used until it is fitted (None: measure nothing until then).
        self.prior = prior
        self.indirect = indirect
        self.flush_interval = flush_interval
        self.scale = 1.0
        #: The last window's measured share of a core taken by logging, None before the first.
        self.measured: float | None = None
        #: The writer's fixed part of it (its cost per write, once per flush interval).
        self.measured_fixed: float | None = None
        self._clock = clock
        self._requests = 0  # logged in the window
        self._rows = 0
        self._timed_ns = 0  # request-path time of the timed requests, all windows
        self._timed = 0
        #: The writer's CPU seconds per write, per request and per row (None until a write was priced).
        self.writer_price: tuple[float, float, float] | None = None
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
        if not requests:
            return
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
        if self.prior is not None and (price is None or len(self._priced) < PRIOR_UNTIL_WRITES):
            price = self.prior
        if not requests or price is None:
            return False
        fixed = price[0] / self.flush_interval  # a share of a core, whatever the factor
        variable = (requests * (per_request + self.indirect + price[1]) + rows * price[2] + shipper) / elapsed
        self.measured, self.measured_fixed = fixed + variable, fixed
        if self.share is None:
            return True
        allowed = max(self.share - fixed, VARIABLE_AT_LEAST * self.share)
        old = self.scale
        if variable > allowed:
            self.scale = max(MIN_SCALE, old * max(1 / _SHRINK_AT_MOST, allowed / variable))
        elif old < 1.0 and variable < _GROW_BELOW * allowed:
            grow = min(_GROW_AT_MOST, allowed / variable) if variable > 0 else _GROW_AT_MOST
            self.scale = min(1.0, old * grow)
        return True


#: The fit's models, as the columns (0: per write, 1: per request, 2: per row) each one prices, in
#: the order a tie is settled: the fewest parts, a request's and a row's cost before a fixed one.
_MODELS = ((1,), (2,), (0,), (1, 2), (0, 1), (0, 2), (0, 1, 2))
#: A column is determined by the writes when more than this share of it is not a combination of
#: the others (writes whose sizes differ by 0.1 % or more).
_DETERMINED = 1e-6


def fit_price(writes: Sequence[tuple[float, int, int]]) -> tuple[float, float, float]:
    """CPU seconds per write, per request and per row that best explain ``writes`` (each its CPU,
    requests and rows): least squares, every price at least zero. Of the models that explain the
    writes equally well the simplest is taken, and a cost per request or row before a fixed one:
    one write, or writes all of one size, put their whole cost per request (exact for that size)."""
    data = [(c, (1.0, float(q), float(w))) for c, q, w in writes]
    best: tuple[float, tuple[float, float, float]] | None = None
    scale = sum(c * c for c, _ in data)
    for model in _MODELS:
        coefficients = _least_squares(data, model)
        if coefficients is None or min(coefficients) < 0:
            continue
        price = [0.0, 0.0, 0.0]
        for column, value in zip(model, coefficients, strict=True):
            price[column] = value
        residual = sum((c - sum(p * x for p, x in zip(price, xs, strict=True))) ** 2 for c, xs in data)
        if best is None or residual < best[0] - 1e-9 * scale:
            best = (residual, (price[0], price[1], price[2]))
    return best[1] if best is not None else (0.0, 0.0, 0.0)


def _least_squares(data: Sequence[tuple[float, tuple[float, ...]]], columns: Sequence[int]) -> list[float] | None:
    """The least-squares coefficients of ``columns``; None when the writes cannot determine them
    (a column zero, or one a combination of the others). The columns are scaled to unit length, so
    the square of a diagonal entry of their QR factor is the share of that column the columns
    before it do not explain."""
    x = np.array([[xs[j] for j in columns] for _, xs in data], dtype=np.float64)
    norms = np.linalg.norm(x, axis=0)
    if len(data) < len(columns) or not norms.all():
        return None
    scaled = x / norms
    if (np.diag(np.linalg.qr(scaled, mode="r")) ** 2 < _DETERMINED).any():
        return None
    cpu = np.array([c for c, _ in data], dtype=np.float64)
    coefficients: list[float] = (np.linalg.lstsq(scaled, cpu, rcond=None)[0] / norms).tolist()
    return coefficients
