"""The eight aggregation functions over many index ranges of one value array at once.

``values`` is a float64 array with NaN for a missing value; each query is a range ``[a, b)`` of
it (one key's events inside one window). Results follow docs/streaming.md rule 5: ``count`` counts
the non-missing values (int64), every other function gives NaN when it has no value (``stddev``
with fewer than two), ``stddev`` is the sample standard deviation.

Every function works on the gathered values of the windows, in C loops (``np.ufunc.reduceat``):
sums are summed from the window's own values, never as differences of running totals, so a long
history of large values cannot cancel a small window's digits, and ``stddev`` is a corrected
two-pass computation around each window's own mean.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ladle.aggregation.runs import ranges

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def aggregate(function: str, values: F64, a: I64, b: I64) -> F64 | I64:
    """``function`` of ``values[a[i]:b[i]]`` for every ``i`` (missing values skipped)."""
    lens = np.maximum(b - a, 0)
    idx = ranges(a, lens)
    x = values[idx]
    ok = ~np.isnan(x)
    n = len(a)
    full = lens > 0
    starts = np.r_[0, np.cumsum(lens)[:-1]][full]
    count = np.zeros(n, np.int64)
    if len(starts):
        count[full] = np.add.reduceat(ok.astype(np.int64), starts)
    if function == "count":
        return count
    out = np.full(n, np.nan)
    if not len(starts):
        return out
    if function in ("sum", "mean", "stddev"):
        total = np.zeros(n)
        total[full] = np.add.reduceat(np.where(ok, x, 0.0), starts)
        if function == "sum":
            return np.where(count > 0, total, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
        if function == "mean":
            return np.where(count > 0, mean, np.nan)
        return _stddev(x, ok, lens, starts, full, mean, count)
    if function in ("min", "max"):
        out[full] = (np.fmin if function == "min" else np.fmax).reduceat(x, starts)
        return out
    where = np.arange(len(x))
    if function == "first":
        pick = np.minimum.reduceat(np.where(ok, where, len(x)), starts)
    else:
        pick = np.maximum.reduceat(np.where(ok, where, -1), starts)
    has = count[full] > 0
    picked = np.full(int(full.sum()), np.nan)
    picked[has] = x[pick[has]]
    out[full] = picked
    return out


def _stddev(
    x: F64, ok: npt.NDArray[np.bool_], lens: I64, starts: I64, full: npt.NDArray[np.bool_], mean: F64, count: I64
) -> F64:
    """Sample standard deviation, corrected two-pass around each window's mean."""
    n = len(lens)
    dev = np.where(ok, x - np.repeat(np.nan_to_num(mean), lens), 0.0)
    square = np.zeros(n)
    square[full] = np.add.reduceat(dev * dev, starts)
    drift = np.zeros(n)
    drift[full] = np.add.reduceat(dev, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (square - drift * drift / count) / (count - 1)
    return np.where(count >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
