"""Summaries of fixed blocks of 64 entries, so long windows are aggregated without reading every value.

The engine's value arrays are cut into aligned blocks ``[64 j, 64 j + 64)``. For every block and
value column a :class:`Summaries` keeps the count of present values, their sum, minimum, maximum,
mean and ``M2`` (the sum of squared deviations from the block's mean). A window ``[a, b)`` that
covers whole blocks is then read as its ragged head and tail values plus the summaries of the
blocks between (``windows.Windows``): at most 126 values and ``(b - a) / 64`` summaries.

Nothing here subtracts running totals: every sum is a sum of the window's own values, grouped by
block, and variances merge per-block ``M2`` with Chan's pairwise formula, so precision is that of
summing the window directly. A write marks its blocks stale and a read recomputes the stale blocks it needs;
blocks holding garbage or spare room are never used, because a window only uses blocks lying
wholly inside one key's live run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

BLOCK = 64
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: The statistics kept per block, with their value for an empty block.
FIELDS = {"n": 0.0, "sum": 0.0, "min": np.nan, "max": np.nan, "mean": 0.0, "m2": 0.0}


class Summaries:
    """Per-block statistics of some float columns (NaN is a missing value), computed when first read.

    Writes only mark their blocks stale (cheap); :meth:`read` recomputes the stale blocks it is
    asked for. Short windows never read a block, so they never pay for summaries.
    """

    def __init__(self, columns: Iterable[str]) -> None:
        self.columns = list(columns)
        self.stats: dict[str, dict[str, F64]] = {c: {f: np.zeros(0) for f in FIELDS} for c in self.columns}
        self.stale: dict[str, npt.NDArray[np.bool_]] = {c: np.zeros(0, np.bool_) for c in self.columns}

    def resize(self, size: int) -> None:
        """Arrays laid out afresh, ``size`` entries long: every block is stale."""
        blocks = size // BLOCK
        for column in self.columns:
            self.stats[column] = {f: np.full(blocks, fill) for f, fill in FIELDS.items()}
            self.stale[column] = np.ones(blocks, np.bool_)

    def mark(self, positions: I64) -> None:
        """Entries at ``positions`` were written."""
        if len(positions):
            blocks = positions // BLOCK
            for column in self.columns:
                self.stale[column][blocks] = True

    def read(self, cols: dict[str, npt.NDArray[Any]], column: str, blocks: I64) -> dict[str, F64]:
        """The statistics of ``blocks`` of ``column``, recomputing the stale ones."""
        stale = self.stale[column]
        redo = np.unique(blocks[stale[blocks]])
        if len(redo):
            self._compute(cols[column], self.stats[column], redo)
            stale[redo] = False
        return {f: values[blocks] for f, values in self.stats[column].items()}

    @staticmethod
    def _compute(values: F64, stats: dict[str, F64], blocks: I64) -> None:
        x = values[blocks[:, None] * BLOCK + np.arange(BLOCK)]
        ok = ~np.isnan(x)
        n = ok.sum(axis=1)
        total = np.where(ok, x, 0.0).sum(axis=1)
        mean = np.where(n > 0, total / np.maximum(n, 1), 0.0)
        dev = np.where(ok, x - mean[:, None], 0.0)
        stats["n"][blocks] = n
        stats["sum"][blocks] = total
        stats["mean"][blocks] = mean
        stats["m2"][blocks] = (dev * dev).sum(axis=1)
        stats["min"][blocks] = np.fmin.reduce(x, axis=1)
        stats["max"][blocks] = np.fmax.reduce(x, axis=1)
