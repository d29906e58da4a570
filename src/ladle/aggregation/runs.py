"""Per-key runs of entries sorted by event time, held in one set of growable NumPy arrays.

The incremental engine keeps, for every key, the winning events it still needs, sorted by event
time. Storing each key in its own Python object would make every micro-batch loop over keys; here
every key (a *slot*) owns a contiguous run ``[lo, hi)`` inside shared column arrays, with spare
room up to ``end``. Everything is vectorized over all the keys a micro-batch touches:

* an event newer than its key's newest is appended in place (the common, in-order case);
* a key whose run must take an older event, or whose run is full, is rewritten, merged and with
  half again as much room, at the top of the arrays (amortized O(1) per event; the old run becomes
  garbage);
* eviction moves ``lo`` forward; garbage is reclaimed by a full compaction when the arrays are
  full and more than half of what they hold is garbage (amortized O(1) per event too).

Column ``t`` (event time, µs) is always present and sorted inside each run; times are unique
within a run (one entry per identity).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ladle.aggregation.blocks import BLOCK, Summaries

I64 = npt.NDArray[np.int64]
Arr = npt.NDArray[Any]

_MIN_ROOM = 4
_COMPACT_FLOOR = 1 << 16
_FIRST_SIZE = 1024
_MIN = np.iinfo(np.int64).min


def search(keys: I64, lo: I64, hi: I64, x: I64, *, right: bool) -> I64:
    """For each ``i``, the first index ``j`` in ``[lo[i], hi[i])`` with ``keys[j] > x[i]`` (``right``)
    or ``keys[j] >= x[i]``, or ``hi[i]`` when there is none; ``keys`` sorted inside each range.

    A binary search run on all queries at once: about log2(longest range) vector steps, for the
    queries whose answer is not at either end of their range (a window holding all of a short run,
    an eviction with nothing to drop: the common cases, answered by two comparisons).
    """
    lo = lo.astype(np.int64, copy=True)
    hi = hi.astype(np.int64, copy=True)
    if not len(keys):
        return lo
    inside = lo < hi
    top = len(keys) - 1
    first, last = keys[np.minimum(lo, top)], keys[np.clip(hi - 1, 0, top)]
    if right:
        at_lo, at_hi = first > x, last <= x
    else:
        at_lo, at_hi = first >= x, last < x
    at_hi &= inside & ~at_lo
    lo[at_hi] = hi[at_hi]
    idx = np.flatnonzero(inside & ~at_lo & ~at_hi)
    while idx.size:
        lo_i, hi_i = lo[idx], hi[idx]
        mid = (lo_i + hi_i) >> 1
        found = keys[mid]
        go_right = found <= x[idx] if right else found < x[idx]
        lo_i = np.where(go_right, mid + 1, lo_i)
        hi_i = np.where(go_right, hi_i, mid)
        lo[idx], hi[idx] = lo_i, hi_i
        idx = idx[lo_i < hi_i]
    return lo


class Runs:
    """Sorted runs of entries per slot. ``columns`` maps a name to an array of ``dtype`` with a fill value."""

    def __init__(self, columns: dict[str, tuple[np.dtype[np.generic], object]], summarized: list[str]) -> None:
        self._spec = {"t": (np.dtype(np.int64), 0), **columns}
        self.cols: dict[str, Arr] = {
            name: np.full(_blocks(_FIRST_SIZE), fill, dtype) for name, (dtype, fill) in self._spec.items()
        }
        #: per-block statistics of the float columns windows aggregate
        self.summaries = Summaries(summarized)
        self.summaries.resize(len(self.t))
        self.lo: I64 = np.zeros(0, np.int64)
        self.hi: I64 = np.zeros(0, np.int64)
        self.end: I64 = np.zeros(0, np.int64)
        self._top = 0

    @property
    def t(self) -> I64:
        """Event times (µs) of every entry, live or not."""
        return self.cols["t"]

    @property
    def slots(self) -> int:
        """The number of slots."""
        return len(self.lo)

    @property
    def live(self) -> int:
        """Entries held in runs."""
        return int((self.hi - self.lo).sum())

    def add_slots(self, count: int) -> None:
        """Add ``count`` empty slots."""
        empty = np.zeros(count, np.int64)
        self.lo = np.concatenate([self.lo, empty])
        self.hi = np.concatenate([self.hi, empty])
        self.end = np.concatenate([self.end, empty])

    def find(self, slot: I64, t: I64) -> tuple[I64, npt.NDArray[np.bool_]]:
        """Position of ``(slot, t)`` (or where it would go) and whether it is there."""
        lo, hi = self.lo[slot], self.hi[slot]
        newest = np.where(hi > lo, self.t[np.maximum(hi - 1, 0)], _MIN)
        found = (hi > lo) & (t == newest)  # the key's newest entry (the common case after an append)
        pos = np.where(found, hi - 1, hi)
        rest = np.flatnonzero(t < newest)  # an older time: search the run
        if len(rest):
            pos[rest] = search(self.t, lo[rest], hi[rest], t[rest], right=False)
            found[rest] = self.t[pos[rest]] == t[rest]
        return pos, found

    def positions(self, slot: I64) -> tuple[I64, I64]:
        """Every live entry of ``slot`` (no repeats): positions and their slots."""
        lens = self.hi[slot] - self.lo[slot]
        return ranges(self.lo[slot], lens), np.repeat(slot, lens)

    def insert(self, slot: I64, t: I64, values: dict[str, Arr]) -> None:
        """Insert new entries, sorted by ``(slot, t)`` and not already present; ``values`` per column."""
        if not len(slot):
            return
        starts = changes(slot)
        if starts.all():  # one entry per slot (the common case)
            self._insert_one(slot, t, values)
            return
        first = np.flatnonzero(starts)
        counts = np.diff(np.append(first, len(slot)))
        uniq = slot[first]
        lo, hi = self.lo[uniq], self.hi[uniq]
        newest = np.where(hi > lo, self.t[np.maximum(hi - 1, 0)], _MIN)
        fits = (t[first] > newest) & (self.end[uniq] - hi >= counts)
        per_entry = np.repeat(fits, counts)
        if per_entry.any():
            rank = np.arange(len(slot)) - np.repeat(first, counts)
            at = np.repeat(hi, counts)[per_entry] + rank[per_entry]
            self.cols["t"][at] = t[per_entry]
            for name, vals in values.items():
                self.cols[name][at] = vals[per_entry]
            self.summaries.mark(at)
            self.hi[uniq[fits]] += counts[fits]
        if not per_entry.all():
            self._rewrite(uniq[~fits], slot[~per_entry], t[~per_entry], {k: v[~per_entry] for k, v in values.items()})

    def _insert_one(self, slot: I64, t: I64, values: dict[str, Arr]) -> None:
        """:meth:`insert` of one entry per slot: appended in place where it is the newest and there is room."""
        lo, hi = self.lo[slot], self.hi[slot]
        newest = np.where(hi > lo, self.t[np.maximum(hi - 1, 0)], _MIN)
        fits = (t > newest) & (self.end[slot] > hi)
        every = bool(fits.all())
        at = hi if every else hi[fits]
        if len(at):
            pick = slice(None) if every else fits
            self.cols["t"][at] = t[pick]
            for name, vals in values.items():
                self.cols[name][at] = vals[pick]
            self.summaries.mark(at)
            self.hi[slot[pick]] += 1
        if not every:
            rest = ~fits
            self._rewrite(slot[rest], slot[rest], t[rest], {k: v[rest] for k, v in values.items()})

    def _rewrite(self, uniq: I64, slot: I64, t: I64, values: dict[str, Arr]) -> None:
        """Merge new entries into the runs of ``uniq`` and write those runs afresh at the top."""
        sizes = (self.hi[uniq] - self.lo[uniq]) + np.bincount(np.searchsorted(uniq, slot), minlength=len(uniq))
        room = sizes + np.maximum(sizes >> 1, _MIN_ROOM)
        need = int(room.sum())
        self._reserve(need)  # may compact: read positions after it
        old_pos, old_slot = self.positions(uniq)
        order = np.lexsort((np.concatenate([self.t[old_pos], t]), np.concatenate([old_slot, slot])))
        starts = self._top + offsets(room)
        rank = np.arange(len(order)) - np.repeat(offsets(sizes), sizes)
        dest = np.repeat(starts, sizes) + rank
        for name, col in self.cols.items():
            new_vals = t if name == "t" else values.get(name)
            if new_vals is None:
                new_vals = np.full(len(slot), self._spec[name][1], col.dtype)
            merged = np.concatenate([col[old_pos], new_vals])
            col[dest] = merged[order]
        self.summaries.mark(dest)
        self.lo[uniq] = starts
        self.hi[uniq] = starts + sizes
        self.end[uniq] = starts + room
        self._top += need

    def _reserve(self, need: int) -> None:
        """Room for ``need`` entries at the top: compact when garbage dominates, else grow."""
        capacity = len(self.t)
        if self._top + need <= capacity:
            return
        live = self.live
        if self._top > 2 * live + _COMPACT_FLOOR:
            self._compact()
        if self._top + need > len(self.t):
            size = _blocks(max(len(self.t) + (len(self.t) >> 1), self._top + need + _FIRST_SIZE))
            for name, col in self.cols.items():
                grown = np.full(size, self._spec[name][1], col.dtype)
                grown[: self._top] = col[: self._top]
                self.cols[name] = grown
            self.summaries.resize(len(self.t))

    def _compact(self) -> None:
        """Rewrite every run contiguously (with room) from the start of fresh arrays."""
        every = np.arange(self.slots, dtype=np.int64)
        pos, _ = self.positions(every)
        sizes = self.hi - self.lo
        room = np.where(sizes > 0, sizes + np.maximum(sizes >> 2, _MIN_ROOM), 0)
        starts = offsets(room)
        dest = ranges(starts, sizes)
        size = _blocks(int(room.sum()) + (int(room.sum()) >> 2) + _FIRST_SIZE)
        for name, col in self.cols.items():
            fresh = np.full(size, self._spec[name][1], col.dtype)
            fresh[dest] = col[pos]
            self.cols[name] = fresh
        self.lo, self.hi, self.end = starts, starts + sizes, starts + room
        self._top = int(room.sum())
        self.summaries.resize(len(self.t))

    def write(self, at: I64, values: dict[str, Arr]) -> None:
        """Overwrite columns of existing entries (a duplicate replacing its identity's winner)."""
        if not len(at):
            return
        for name, vals in values.items():
            self.cols[name][at] = vals
        self.summaries.mark(at)

    def evict(self, bound: int | I64) -> None:
        """Drop the entries with ``t <= bound`` from every run (``bound``: one for all, or one per slot)."""
        bounds = np.full(self.slots, bound, np.int64) if isinstance(bound, int) else bound
        self.lo = search(self.t, self.lo, self.hi, bounds, right=True)

    def clear(self, slots: I64) -> None:
        """Empty the runs of ``slots`` (their entries become garbage)."""
        self.lo[slots] = self.hi[slots]


def _blocks(size: int) -> int:
    """``size`` rounded up to whole blocks (summaries cover whole blocks)."""
    return -(-size // BLOCK) * BLOCK


def offsets(lens: I64) -> I64:
    """Exclusive running total: where each of consecutive pieces of ``lens`` starts."""
    out = np.zeros(len(lens), np.int64)
    if len(lens) > 1:
        np.cumsum(lens[:-1], out=out[1:])
    return out


def changes(*keys: I64) -> npt.NDArray[np.bool_]:
    """True where a sorted sequence of ``keys`` tuples starts a new value (always at 0)."""
    n = len(keys[0])
    out = np.ones(n, np.bool_)
    if n > 1:
        diff = keys[0][1:] != keys[0][:-1]
        for k in keys[1:]:
            diff |= k[1:] != k[:-1]
        out[1:] = diff
    return out


def ranges(starts: I64, lens: I64) -> I64:
    """The concatenation of ``arange(s, s + n)`` for each ``(s, n)``."""
    total = int(lens.sum())
    if not total:
        return np.zeros(0, np.int64)
    return np.repeat(starts - offsets(lens), lens) + np.arange(total, dtype=np.int64)
