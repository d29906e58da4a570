"""The statistics drift detection uses, on NumPy arrays: PSI, two-sample Kolmogorov-Smirnov, chi-square.

Written here on NumPy alone (no SciPy in the core install). The p-values use the textbook
formulas: the asymptotic Kolmogorov distribution for KS (with Stephens' small-sample correction of
the effective size), and the regularized upper incomplete gamma function for the chi-square
survival function (series below ``a + 1``, Lentz's continued fraction above).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

#: Floor on a bin's share before taking logs in PSI: an empty bin counts as this share, so one
#: bin that empties out scores high but finite.
PSI_FLOOR = 1e-4

FloatArray = npt.NDArray[np.float64]


def psi(expected: Sequence[float] | FloatArray, actual: Sequence[float] | FloatArray) -> float:
    """Population stability index of two binned distributions (shares or counts, same bins).

    ``sum((a - e) * ln(a / e))`` over bins, each side normalized to shares and floored at
    :data:`PSI_FLOOR`. 0 means identical; the usual reading is < 0.1 stable, 0.1-0.25 moderate,
    > 0.25 a major shift.
    """
    e = _shares(expected)
    a = _shares(actual)
    if e.size == 0 or a.size == 0:
        return 0.0
    e = np.maximum(e, PSI_FLOOR)
    a = np.maximum(a, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(values: Sequence[float] | FloatArray) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    total = arr.sum()
    return arr / total if total > 0 else arr


def ks_2samp(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: ``(D, p)``, D the largest gap between the two empirical CDFs.

    Both arrays must be free of NaN. Returns ``(0.0, 1.0)`` when either is empty.
    """
    if a.size == 0 or b.size == 0:
        return 0.0, 1.0
    a = np.sort(a)
    b = np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    n = a.size * b.size / (a.size + b.size)
    root = math.sqrt(n)
    return d, kolmogorov_sf((root + 0.12 + 0.11 / root) * d)


def kolmogorov_sf(x: float) -> float:
    """``P(K > x)`` for the Kolmogorov distribution: ``2 * sum((-1)^(k-1) * exp(-2 k^2 x^2))``."""
    if x <= 0.0:
        return 1.0
    if x < 0.2:  # the alternating series converges badly here and the answer is 1 to 1e-15
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-16:
            break
    return float(min(1.0, max(0.0, 2.0 * total)))


def chi2_homogeneity(counts_a: Sequence[float], counts_b: Sequence[float]) -> tuple[float, float]:
    """Chi-square test that two count vectors (same categories) come from one distribution: ``(stat, p)``.

    Categories empty on both sides are dropped. ``(0.0, 1.0)`` when there is nothing to compare.
    """
    table = np.array([counts_a, counts_b], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return stat, chi2_sf(stat, dof)


def chi2_sf(x: float, dof: int) -> float:
    """``P(X > x)`` for a chi-square variable with ``dof`` degrees of freedom."""
    if x <= 0.0:
        return 1.0
    return gammaincc(dof / 2.0, x / 2.0)


def gammaincc(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function ``Q(a, x)`` for ``a > 0``, ``x >= 0``."""
    if x <= 0.0:
        return 1.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        # Series for P(a, x): sum x^n / (a (a+1) ... (a+n)).
        term = total = 1.0 / a
        denom = a
        for _ in range(1000):
            denom += 1.0
            term *= x / denom
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return float(min(1.0, max(0.0, 1.0 - total * math.exp(log_prefix))))
    # Continued fraction for Q(a, x), evaluated with the modified Lentz method.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return float(min(1.0, max(0.0, math.exp(log_prefix) * h)))
