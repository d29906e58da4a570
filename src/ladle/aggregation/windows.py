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

from ladle.aggregation.blocks import BLOCK
from ladle.aggregation.runs import offsets, ranges

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


#: what a Windows computes from its ranges alone (shared by :meth:`Windows.over`)
_GEOMETRY = ("a", "b", "lens", "first_block", "blocks", "raw_lens", "_raw_index", "_any_blocks", "_raw_cuts")


class Windows:
    """The ranges ``values[a[i]:b[i]]``: a long range is read as its ragged head and tail values
    (the *raw* part) and the summaries of the whole blocks between; a short one as values only."""

    def __init__(self, values: F64, summaries: Callable[[I64], dict[str, F64]] | None, a: I64, b: I64) -> None:
        self.values, self.summaries, self.a, self.b = values, summaries, a, b
        self.lens = np.maximum(b - a, 0)
        if not len(a) or summaries is None or int(self.lens.max()) < 2 * BLOCK:  # no range holds 2 whole blocks
            self._short(a)
            return
        self.first_block = -(-a // BLOCK)
        blocks = b // BLOCK - self.first_block
        blocky = (blocks >= 2) if summaries is not None else np.zeros(len(a), np.bool_)
        self.blocks = np.where(blocky, blocks, 0)
        if blocky.any():  # per range: head values, then tail values, contiguous
            head = np.where(blocky, self.first_block * BLOCK - a, self.lens)
            tail_from = np.where(blocky, (self.first_block + self.blocks) * BLOCK, b)
            self.raw_lens = head + (b - tail_from)
            self._raw_index = ranges(np.stack([a, tail_from], 1).ravel(), np.stack([head, b - tail_from], 1).ravel())
        else:
            self.raw_lens = self.lens
            self._raw_index = ranges(a, self.lens)
        self._any_blocks = bool(self.blocks.any())
        #: where each range's raw values start (of the non-empty ranges) and which those are (None: all)
        self._raw_cuts = _cuts(self.raw_lens)

    def _short(self, a: I64) -> None:
        """The geometry when every range is read value by value (none spans two whole blocks)."""
        lens = self.lens
        self.first_block = a
        self.blocks = np.zeros(len(a), np.int64)
        self.raw_lens = lens
        self._any_blocks = False
        starts = offsets(lens)
        total = int(starts[-1] + lens[-1]) if len(lens) else 0
        self._raw_index = np.repeat(a - starts, lens) + np.arange(total, dtype=np.int64)
        self._raw_cuts = _cuts(lens, starts)

    def over(self, values: F64, summaries: Callable[[I64], dict[str, F64]]) -> Windows:
        """The same ranges over another column: the geometry (block split, raw index) is reused,
        not recomputed. Only for windows built with summaries (their split depends on it)."""
        assert self.summaries is not None
        other = Windows.__new__(Windows)
        for name in _GEOMETRY:  # never the cached results (count, total, _raw, ...): they are per column
            setattr(other, name, getattr(self, name))
        other.values, other.summaries = values, summaries
        return other

    @cached_property
    def _raw(self) -> tuple[F64, Mask]:
        x = self.values[self._raw_index]
        return x, ~np.isnan(x)

    @cached_property
    def _block_stats(self) -> dict[str, F64]:
        assert self.summaries is not None
        return self.summaries(ranges(self.first_block, self.blocks))

    def _per_range(
        self, ufunc: np.ufunc, x: npt.NDArray[np.generic], cuts: tuple[I64, Mask | None], fill: float
    ) -> F64:
        """``ufunc`` over consecutive pieces of ``x`` cut at ``cuts`` (:func:`_cuts`; ``fill`` for an empty piece)."""
        starts, some = cuts
        if some is None:  # no empty piece (rows at an event's own time: its window holds it)
            return np.asarray(ufunc.reduceat(x, starts), np.float64) if len(starts) else np.full(0, fill)
        out = np.full(len(some), fill)
        if len(starts):
            out[some] = ufunc.reduceat(x, starts)
        return out

    def _raw_part(self, ufunc: np.ufunc, x: npt.NDArray[np.generic], fill: float) -> F64:
        return self._per_range(ufunc, x, self._raw_cuts, fill)

    def _block_part(self, ufunc: np.ufunc, x: F64 | str, fill: float) -> F64 | float:
        if not self._any_blocks:
            return fill  # broadcast by the caller's arithmetic
        return self._per_range(ufunc, self._block_stats[x] if isinstance(x, str) else x, _cuts(self.blocks), fill)

    @cached_property
    def count(self) -> I64:
        """Present values per range."""
        _, ok = self._raw
        n = self._raw_part(np.add, ok.astype(np.float64), 0.0) + self._block_part(np.add, "n", 0.0)
        return np.rint(n).astype(np.int64)

    @cached_property
    def total(self) -> F64:
        """Sum of the present values per range (NaN without any)."""
        x, ok = self._raw
        total = self._raw_part(np.add, np.where(ok, x, 0.0), 0.0) + self._block_part(np.add, "sum", 0.0)
        return np.where(self.count > 0, total, np.nan)

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
            ufunc = np.fmin if function == "min" else np.fmax
            x, _ = self._raw
            return ufunc(self._raw_part(ufunc, x, np.nan), self._block_part(ufunc, function, np.nan))
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
        """Sample standard deviation: values and block summaries merged around each range's mean
        (Chan et al.), corrected for the rounding of that mean."""
        count = self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, self.total / count, 0.0)
        x, ok = self._raw
        dev = np.where(ok, x - np.repeat(mean, self.raw_lens), 0.0)
        square = self._raw_part(np.add, dev * dev, 0.0)
        drift = self._raw_part(np.add, dev, 0.0)
        if self.blocks.any():
            stats = self._block_stats
            n = stats["n"]
            dev = np.where(n > 0, stats["mean"] - np.repeat(mean, self.blocks), 0.0)
            square += self._block_part(np.add, stats["m2"] + n * dev * dev, 0.0)
            drift += self._block_part(np.add, n * dev, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (square - drift * drift / count) / (count - 1)
        return np.where(count >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)


def _cuts(lens: I64, starts: I64 | None = None) -> tuple[I64, Mask | None]:
    """Where the non-empty pieces of consecutive ``lens`` start, and which pieces those are (None: all);
    ``starts``: the pieces' offsets, when the caller has them already."""
    starts = offsets(lens) if starts is None else starts
    some = lens > 0
    if some.all():
        return starts, None
    return starts[some], some
