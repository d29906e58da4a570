"""The eight aggregation functions over many index ranges of one value array at once.

``values`` is a float64 array with NaN for a missing value; each query is a range ``[a, b)`` of
it (one key's events inside one window). Results follow docs/streaming.md rule 5: ``count`` counts
the present values (int64); every other function gives NaN without a value (``stddev`` with fewer
than two); ``stddev`` is the sample standard deviation.

A :class:`Windows` gathers the values of its ranges once, for every aggregation over the same
column and window, and reduces them with ``ufunc.reduceat`` (C loops). Sums add each window's own
values, never differences of running totals, so a long history of large values cannot cancel a
small window's digits; ``stddev`` is a corrected two-pass computation around each window's mean.
``first``/``last`` read the window's end values and gather only where those are missing.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import numpy.typing as npt

from ladle.aggregation.runs import offsets, ranges

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


class Windows:
    """The ranges ``values[a[i]:b[i]]``, gathered on first use."""

    def __init__(self, values: F64, a: I64, b: I64) -> None:
        self.values, self.a, self.b = values, a, b
        self.lens = np.maximum(b - a, 0)

    @cached_property
    def _gathered(self) -> tuple[F64, Mask, I64, Mask]:
        """Gathered values, their presence, the start of each non-empty range in them, which are non-empty."""
        x = self.values[ranges(self.a, self.lens)]
        full = self.lens > 0
        starts = offsets(self.lens)[full]
        return x, ~np.isnan(x), starts.astype(np.int64), full

    def _reduce(self, ufunc: np.ufunc, x: npt.NDArray[np.generic], fill: float) -> F64:
        _, _, starts, full = self._gathered
        out = np.full(len(self.a), fill)
        if len(starts):
            out[full] = ufunc.reduceat(x, starts)
        return out

    @cached_property
    def count(self) -> I64:
        """Present values per range."""
        _, ok, _, _ = self._gathered
        return self._reduce(np.add, ok.astype(np.float64), 0.0).astype(np.int64)

    @cached_property
    def total(self) -> F64:
        """Sum of the present values per range (NaN without any)."""
        x, ok, _, _ = self._gathered
        return np.where(self.count > 0, self._reduce(np.add, np.where(ok, x, 0.0), 0.0), np.nan)

    def aggregate(self, function: str) -> F64 | I64:
        """``function`` of each range."""
        if function == "count":
            return self.count
        if function == "sum":
            return self.total
        if function == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                return self.total / self.count
        if function in ("min", "max"):
            x, _, _, _ = self._gathered
            return self._reduce(np.fmin if function == "min" else np.fmax, x, np.nan)
        if function in ("first", "last"):
            return self._end(function == "first")
        return self._stddev()

    def _end(self, first: bool) -> F64:
        """The value of the earliest (``first``) or latest present event of each range."""
        a, b, v = self.a, self.b, self.values
        full = self.lens > 0
        out = np.full(len(a), np.nan)
        out[full] = v[(a if first else b - 1)[full]]
        look = np.flatnonzero(full & np.isnan(out))
        if len(look):
            lens = self.lens[look]
            x = v[ranges(a[look], lens)]
            where = np.where(np.isnan(x), len(x) if first else -1, np.arange(len(x)))
            pick = (np.minimum if first else np.maximum).reduceat(where, offsets(lens))
            found = (pick >= 0) & (pick < len(x))
            out[look[found]] = x[pick[found]]
        return out

    def _stddev(self) -> F64:
        """Sample standard deviation, corrected two-pass around each range's mean."""
        x, ok, _, _ = self._gathered
        count = self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.total / count
        dev = np.where(ok, x - np.repeat(np.where(count > 0, mean, 0.0), self.lens), 0.0)
        square = self._reduce(np.add, dev * dev, 0.0)
        drift = self._reduce(np.add, dev, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (square - drift * drift / count) / (count - 1)
        return np.where(count >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
