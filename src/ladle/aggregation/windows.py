"""The eight aggregation functions over many index ranges of one value array at once.

``values`` is a float64 array with NaN for a missing value; each query is a range ``[a, b)`` of
it (one key's events inside one window). Results follow docs/streaming.md rule 5: ``count`` counts
the present values (int64); every other function gives NaN without a value (``stddev`` with fewer
than two); ``stddev`` is the sample standard deviation.

A :class:`Windows` reads its ranges once for every aggregation over the same column and window:
a long range as its ragged head and tail values plus the summaries of the whole 64-entry blocks
between (``blocks.Summaries``), a short one value by value; then reduces them with
``ufunc.reduceat`` (C loops). Sums add each window's own values (grouped by block), never
differences of running totals, so a long history of large values cannot cancel a small window's
digits; ``stddev`` merges per-block squared deviations around each window's mean (Chan et al.),
corrected for the rounding of that mean. ``first``/``last`` read the window's end values and look
further only where those are missing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np
import numpy.typing as npt

from ladle.aggregation.blocks import BLOCK, FIELDS
from ladle.aggregation.runs import offsets, ranges

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


class Windows:
    """The ranges ``values[a[i]:b[i]]``, read on first use as values and block summaries."""

    def __init__(self, values: F64, summaries: Callable[[I64], dict[str, F64]] | None, a: I64, b: I64) -> None:
        self.values, self.summaries, self.a, self.b = values, summaries, a, b
        self.lens = np.maximum(b - a, 0)

    @cached_property
    def _items(self) -> tuple[dict[str, F64], I64, I64, Mask]:
        """Per range, its items (head values, whole-block summaries, tail values) as statistics
        ``n, sum, min, max, mean, m2``; the number of items per range; where each non-empty range's
        items start; which ranges are non-empty."""
        a, b = self.a, self.b
        first_block, last_block = -(-a // BLOCK), b // BLOCK
        blocky = last_block - first_block >= 2  # only then do summaries save reading values
        if self.summaries is None or not blocky.any():
            per, off = self.lens, offsets(self.lens)
            x = self.values[ranges(a, self.lens)]
            ok = ~np.isnan(x)
            total = np.where(ok, x, 0.0)
            items = {"n": ok.astype(np.float64), "sum": total, "min": x, "max": x, "mean": total}
            items["m2"] = np.zeros(len(x))
        else:
            items, per, off = self._mixed(blocky, first_block, last_block)
        full = per > 0
        return items, per, off[full], full

    def _mixed(self, blocky: Mask, first_block: I64, last_block: I64) -> tuple[dict[str, F64], I64, I64]:
        """Items where some ranges span whole blocks: head and tail values around block summaries."""
        a, b = self.a, self.b
        head = np.where(blocky, first_block * BLOCK - a, self.lens)
        count = np.where(blocky, last_block - first_block, 0)
        tail_from = np.where(blocky, last_block * BLOCK, b)
        tail = b - tail_from
        per = head + count + tail
        off = offsets(per)
        raw = np.concatenate([ranges(a, head), ranges(tail_from, tail)])
        raw_at = np.concatenate([ranges(off, head), ranges(off + head + count, tail)])
        x = self.values[raw]
        ok = ~np.isnan(x)
        items = {f: np.full(int(per.sum()), fill) for f, fill in FIELDS.items()}
        for field, value in (("n", ok), ("sum", np.where(ok, x, 0.0)), ("min", x), ("max", x)):
            items[field][raw_at] = value
        items["mean"][raw_at] = items["sum"][raw_at]
        assert self.summaries is not None
        stats = self.summaries(ranges(first_block, count))
        at = ranges(off + head, count)
        for field in FIELDS:
            items[field][at] = stats[field]
        return items, per, off

    def _reduce(self, ufunc: np.ufunc, x: F64, fill: float) -> F64:
        _, _, starts, full = self._items
        out = np.full(len(self.a), fill)
        if len(starts):
            out[full] = ufunc.reduceat(x, starts)
        return out

    @cached_property
    def count(self) -> I64:
        """Present values per range."""
        return np.rint(self._reduce(np.add, self._items[0]["n"], 0.0)).astype(np.int64)

    @cached_property
    def total(self) -> F64:
        """Sum of the present values per range (NaN without any)."""
        return np.where(self.count > 0, self._reduce(np.add, self._items[0]["sum"], 0.0), np.nan)

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
            return self._reduce(np.fmin if function == "min" else np.fmax, self._items[0][function], np.nan)
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
        """Sample standard deviation: items merged around each range's mean (Chan et al.), corrected."""
        items, per, _, _ = self._items
        count = self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, self.total / count, 0.0)
        n = items["n"]
        dev = np.where(n > 0, items["mean"] - np.repeat(mean, per), 0.0)
        square = self._reduce(np.add, items["m2"] + n * dev * dev, 0.0)
        drift = self._reduce(np.add, n * dev, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (square - drift * drift / count) / (count - 1)
        return np.where(count >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
