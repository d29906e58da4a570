"""The incremental execution of stream feature views: Kafka partitions' state, micro-batch by micro-batch.

``SourceEngine`` applies rules 2 to 8 of docs/streaming.md ("Semantics") to the decoded events of
the partitions of one ``KafkaSource`` that a process holds, each partition against its own state,
for every ``StreamFeatureView`` over that source, and says what to write online; one call takes a
micro-batch of any of them, so a loop turn pays the engine's fixed cost once, not once per
partition. ``PartitionEngine`` is the same for one partition. Neither does I/O: the stream runtime
feeds them micro-batches (each partition's events in offset order) and writes what each
:class:`Step` returns. What follows is about one partition's state; every partition has its own
(its keys have their own slots, see ``keys.KeyIndex``).

**udf and identity.** Each micro-batch's accepted events go through the ``udf`` first (rule 3,
row-level); identity (rule 4) is settled among its surviving rows only, so an event the udf drops
neither counts nor replaces an earlier winner. The watermark (rule 2) still uses every accepted
event.

**State.** Views sharing join keys and udf share one identity table (rule 4 is about ``(K, t)``
among one udf's survivors, so views with other keys or another udf keep their own). It holds, per
key and sorted by event time, every winning event still needed: its created time and offset (to
settle later duplicates) and, per view, the values of the columns the view aggregates
(``runs.Runs``).

**Eviction bound.** Every event accepted from now on has ``t >= W`` (the watermark only rises).
A continuous view writes rows only at the time of an accepted event or, as a correction, at a later
event of the same key; a hopping view writes only window ends ``e >= W`` (ends below ``W`` are
already out). Either way every future row sits at a time ``>= W``, and its windows reach back at
most ``w_max`` (the longest window of the views sharing the state), to ``t_e > W - w_max``. A
duplicate that can still be accepted also has ``t >= W``. So an entry with
``t_e <= W - max(w_max, 1 µs)`` can never be read again and is dropped. Eviction runs once enough
events arrived since the last pass (a quarter of the state, at least 1,024), so it costs O(1) per
event; until then a few extra entries sit harmlessly outside every window.

**Continuous views** (rule 5). A new winner at ``(K, t)`` (new, or replacing a duplicate)
changes the rows of ``K`` at ``t <= t' < t + w_max``: all of them are recomputed and written again
(in order, that is just the new row). Each row's window ``(t' - w, t']`` is found by a vectorized
binary search inside the key's run and aggregated by ``windows.aggregate``.

**Hopping views** (rule 6). After each micro-batch the window ends ``e`` (multiples of the slide)
with ``W_before <= e < W_after`` are written, for each key holding a winning event in
``(e - w_max, e]``. No event that could change them can still be accepted, so each is written once
and is final.

**Restore.** ``restore`` rebuilds the watermark (newest accepted time minus the delay) and the
state from the events the partition accepted before, read back from the offline store (through
the udf again, as any accepted event). Hopping
ends below the restored watermark count as written: the micro-batch that raised the watermark
past them was committed, so it wrote them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from ladle.aggregation import frames
from ladle.aggregation.keys import KeyIndex
from ladle.aggregation.runs import I64, Runs, changes, ranges, search
from ladle.aggregation.windows import Windows
from ladle.definitions import KafkaSource, StreamFeatureView
from ladle.definitions.stream_feature_view import KAFKA_COLUMNS
from ladle.errors import DefinitionError, SchemaMismatchError

_US = timedelta(microseconds=1)
_OFFSET = "_kafka_offset"
_PARTITION = "_kafka_partition"
_MIN = np.iinfo(np.int64).min
#: Eviction runs once this many events (or a quarter of the state) arrived since the last pass.
_EVICT_EVERY = 1024


@dataclass(frozen=True)
class Step:
    """What one micro-batch did: which events were accepted or late, and the rows to write online."""

    accepted: pa.Table
    late: pa.Table
    rows: dict[str, pa.Table]
    #: the partition's watermark (:class:`PartitionEngine`; None from a :class:`SourceEngine`)
    watermark_us: int | None
    #: every partition's watermark after the micro-batch (partitions without events yet are absent)
    watermarks: dict[int, int] = field(default_factory=dict)


class SourceEngine:
    """State of the partitions of one KafkaSource that one process holds, feeding every StreamFeatureView
    over that source; one :meth:`process` call handles a micro-batch of any of them.

    Each partition keeps its own state (rule 2's watermark, rule 4's identities, the runs of its keys:
    a key is scoped by its partition), exactly as one :class:`PartitionEngine` per partition would;
    only the work is shared, so a loop turn over several partitions pays the engine's fixed cost
    (tens of small NumPy and Arrow calls) once instead of once per partition.

    >>> engine = SourceEngine(ticks, [price_stream])
    >>> engine.restore(3, history)        # partition 3's accepted events, read back
    >>> step = engine.process(batch)      # decoded events of several partitions (``_kafka_partition``)
    >>> step.rows["commodity_price_stream"]
    """

    def __init__(self, source: KafkaSource, views: Sequence[StreamFeatureView]) -> None:
        for view in views:
            if not isinstance(view, StreamFeatureView) or view.source.name != source.name:
                raise DefinitionError(f"engine of source '{source.name}': {view!r} does not read it")
        self.source = source
        self._ts = source.timestamp_field
        self._created = source.created_timestamp_column
        self._delay = source.watermark_delay_threshold // _US
        by_identity: dict[tuple[tuple[str, ...], tuple[str, ...] | None], list[StreamFeatureView]] = {}
        for view in views:  # rule 4 is among the udf's survivors: one identity table per (keys, udf)
            udf = None if view.udf is None else (view.udf.module, view.udf.qualname, view.udf.sha256)
            by_identity.setdefault((tuple(view.join_keys), udf), []).append(view)
        self._groups = [_Group(list(keys), group, self._ts) for (keys, _), group in by_identity.items()]
        #: per partition: the newest accepted event time (µs)
        self._newest: dict[int, int] = {}
        self._since_evict = 0

    def watermark_us(self, partition: int) -> int | None:
        """A partition's watermark (µs): its newest accepted event time minus the delay; None before any."""
        newest = self._newest.get(partition)
        return None if newest is None else newest - self._delay

    @property
    def watermarks(self) -> dict[int, int]:
        """Every partition's watermark (µs), for the partitions that accepted an event."""
        return {p: n - self._delay for p, n in self._newest.items()}

    @property
    def retained(self) -> int:
        """Events held in state, all partitions (summed over groups of views with different join keys)."""
        return sum(g.runs.live for g in self._groups)

    @property
    def state_bytes(self) -> int:
        """Bytes held by the state's column arrays, all groups."""
        return sum(a.nbytes for g in self._groups for a in g.runs.cols.values())

    def retained_by_partition(self) -> dict[int, int]:
        """Events held in state per partition."""
        out: dict[int, int] = {}
        for group in self._groups:
            sizes = group.runs.hi - group.runs.lo
            counts = np.bincount(group.keys.partitions, weights=sizes) if len(sizes) else np.zeros(0)
            for p in np.flatnonzero(counts).tolist():
                out[p] = out.get(p, 0) + int(counts[p])
        return out

    def restore(self, partition: int, accepted: pa.Table) -> None:
        """Rebuild a partition's state and watermark from the events it accepted before (any order).
        Emits nothing. Call :meth:`drop` first if the engine held the partition before."""
        if not accepted.num_rows:
            return
        t, c, o = self._columns(accepted)
        newest = int(t.max())
        previous = self._newest.get(partition)
        self._newest[partition] = newest if previous is None else max(previous, newest)
        watermark = self._newest[partition] - self._delay
        part = np.full(len(t), partition, np.int64)
        for group in self._groups:
            keep = t > watermark - group.horizon
            group.ingest(accepted.filter(pa.array(keep)), t[keep], c[keep], o[keep], part[keep])
            group.emitted[partition] = watermark
            group.evict(self.watermarks)

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked or lost): its state goes, its watermark too."""
        self._newest.pop(partition, None)
        for group in self._groups:
            group.drop(partition)

    def process(self, events: pa.Table, partition: int | None = None) -> Step:
        """One micro-batch of decoded events, each partition's in arrival (offset) order: of the
        partition ``partition``, or, when it is None, of the partitions their ``_kafka_partition``
        column names (the partitions' events may be interleaved)."""
        t, c, o = self._columns(events)
        runs: list[tuple[int, slice | I64]]
        if partition is not None:
            p = np.full(len(t), partition, np.int64)
            runs = [(partition, slice(None))] if len(t) else []
        else:
            if _PARTITION not in events.column_names:
                raise SchemaMismatchError(f"events of source '{self.source.name}' lack the column {_PARTITION}")
            p = np.asarray(events.column(_PARTITION).to_numpy(), np.int64)
            runs = _partition_runs(p)
        late = self._late_runs(runs, t)
        ok = ~late
        all_ok = not late.any()
        accepted = events if all_ok else events.filter(pa.array(ok))
        rows: dict[str, pa.Table] = {}
        watermarks = self.watermarks
        for group in self._groups:
            if all_ok:
                rows.update(group.step(accepted, t, c, o, p, watermarks))
            else:
                rows.update(group.step(accepted, t[ok], c[ok], o[ok], p[ok], watermarks))
        self._since_evict += accepted.num_rows
        if watermarks and self._since_evict >= _EVICT_EVERY and self._since_evict >= self.retained // 4:
            for group in self._groups:
                group.evict(watermarks)
            self._since_evict = 0
        return Step(
            accepted=accepted,
            late=events.slice(0, 0) if all_ok else events.filter(pa.array(late)),
            rows=rows,
            watermark_us=None if partition is None else watermarks.get(partition),
            watermarks=watermarks,
        )

    def _late_runs(self, runs: list[tuple[int, slice | I64]], t: I64) -> npt.NDArray[np.bool_]:
        """Rule 2 for a micro-batch, each partition's events (``runs``) in order: which are late; moves
        every partition's newest time. When the batch's times, with the partitions' newest, span no
        more than the delay, nothing can be late (the common case): only the newest times move."""
        newest = [self._newest.get(part) for part, _ in runs]
        if len(t) and all(isinstance(where, slice) for _, where in runs):
            known = [n for n in newest if n is not None]
            high = max(int(t.max()), *known) if known else int(t.max())
            if high - int(t.min()) <= self._delay:
                starts = [where.start or 0 for _, where in runs if isinstance(where, slice)]
                tops = np.maximum.reduceat(t, starts).tolist()
                for (part, _), top, old in zip(runs, tops, newest, strict=True):
                    self._newest[part] = top if old is None else max(old, top)
                return np.zeros(len(t), np.bool_)
        late = np.zeros(len(t), np.bool_)
        for part, where in runs:
            late[where] = self._late(part, t[where])
        return late

    def _late(self, partition: int, t: I64) -> npt.NDArray[np.bool_]:
        """Rule 2 for one partition's events (in order): which are late; moves its newest time."""
        prior = np.empty(len(t), np.int64)
        newest = self._newest.get(partition)
        prior[0] = newest if newest is not None else _MIN
        np.maximum.accumulate(np.maximum(t[:-1], prior[0]), out=prior[1:])
        late: npt.NDArray[np.bool_] = (prior != _MIN) & (t < prior - self._delay)
        top = int(t.max())  # a late event is older than the newest, so taking it into the max changes nothing
        self._newest[partition] = top if newest is None else max(newest, top)
        return late

    def _columns(self, events: pa.Table) -> tuple[I64, I64, I64]:
        names = set(events.column_names)
        needed = [self._ts, _OFFSET, *([self._created] if self._created else [])]
        for group in self._groups:
            needed += group.keys.names
        missing = sorted(set(needed) - names)
        if missing:
            raise SchemaMismatchError(f"events of source '{self.source.name}' lack the columns {missing}")
        t = frames.micros(events.column(self._ts), self._ts)
        c = frames.micros(events.column(self._created), self._created) if self._created else np.zeros(len(t), np.int64)
        offsets = events.column(_OFFSET)
        o = np.asarray((offsets if offsets.type == pa.int64() else offsets.cast(pa.int64())).to_numpy(), np.int64)
        return t, c, o


def _partition_runs(p: I64) -> list[tuple[int, slice | I64]]:
    """Each partition of a micro-batch with where its events are: a slice when they are one run (the
    runner hands partitions over one after another), else their positions."""
    if not len(p):
        return []
    starts = np.flatnonzero(changes(p)).tolist()
    heads = p[starts].tolist()
    if len(set(heads)) == len(heads):
        return [(part, slice(a, b)) for part, a, b in zip(heads, starts, [*starts[1:], len(p)], strict=True)]
    return [(part, np.flatnonzero(p == part)) for part in np.unique(p).tolist()]


class PartitionEngine:
    """State of one Kafka partition of one KafkaSource, feeding every StreamFeatureView over that source
    (a :class:`SourceEngine` holding one partition; the events need no ``_kafka_partition`` column).

    >>> engine = PartitionEngine(ticks, [price_stream], partition=0)
    >>> step = engine.process(batch)      # decoded events, offset order
    >>> step.rows["commodity_price_stream"]  # rows to write online now
    """

    def __init__(self, source: KafkaSource, views: Sequence[StreamFeatureView], partition: int) -> None:
        self.source = source
        self.partition = partition
        self._engine = SourceEngine(source, views)

    @property
    def watermark_us(self) -> int | None:
        """The partition's watermark (µs): newest accepted event time minus the delay; None before any."""
        return self._engine.watermark_us(self.partition)

    @property
    def retained(self) -> int:
        """Events held in state (summed over groups of views with different join keys)."""
        return self._engine.retained

    @property
    def state_bytes(self) -> int:
        """Bytes held by the state's column arrays."""
        return self._engine.state_bytes

    def restore(self, accepted: pa.Table) -> None:
        """Rebuild state and watermark from events this partition accepted before (any order). Emits nothing."""
        self._engine.restore(self.partition, accepted)

    def process(self, events: pa.Table) -> Step:
        """One micro-batch of decoded events of this partition in arrival (offset) order."""
        return self._engine.process(events, self.partition)


class _View:
    """One view's share of a group's state: the aggregated columns."""

    def __init__(self, view: StreamFeatureView, number: int) -> None:
        self.view = view
        numeric = {a.column for a in view.aggregations if a.function != "count"}
        self.columns = {a.column: (f"v{number}:{a.column}", a.column in numeric) for a in view.aggregations}
        self.horizon = view.max_window // _US
        self.slide = None if view.slide_interval is None else view.slide_interval // _US
        self.windows = sorted({a.window // _US for a in view.aggregations})


class _Group:
    """The views of one source sharing join keys and udf: one identity table, one set of runs."""

    def __init__(self, keys: list[str], views: list[StreamFeatureView], ts: str) -> None:
        self.keys = KeyIndex(keys)
        self.ts = ts
        self.views = [_View(v, i) for i, v in enumerate(views)]
        self.udf_view = views[0] if views[0].udf is not None else None  # the group's views share it
        spec: dict[str, tuple[np.dtype[np.generic], object]] = {
            "c": (np.dtype(np.int64), 0),
            "o": (np.dtype(np.int64), 0),
        }
        for v in self.views:
            for name, _ in v.columns.values():
                spec[name] = (np.dtype(np.float64), np.nan)
        self.runs = Runs(spec, [name for v in self.views for name, _ in v.columns.values()])
        self.horizon = max(*(v.horizon for v in self.views), 1)
        #: per partition: the watermark up to which hopping ends are written
        self.emitted: dict[int, int] = {}

    def evict(self, watermarks: dict[int, int]) -> None:
        """Drop what no future row can read (the eviction bound), per partition's watermark."""
        if not watermarks or not self.runs.slots:
            return
        parts = self.keys.partitions
        bound = np.full(max(int(parts.max()), *watermarks) + 1, _MIN, np.int64)
        for p, w in watermarks.items():
            bound[p] = w - self.horizon
        self.runs.evict(bound[parts])

    def drop(self, partition: int) -> None:
        """Empty the runs of the partition's keys; forget its hopping progress."""
        self.emitted.pop(partition, None)
        if self.runs.slots:
            self.runs.clear(np.flatnonzero(self.keys.partitions == partition))

    def ingest(self, events: pa.Table, t: I64, c: I64, o: I64, p: I64) -> tuple[I64, I64, dict[str, pa.Table]]:
        """Run the udf on the accepted events (rule 3), settle identities among its survivors (rule 4),
        update the state.

        Returns the changed identities ``(slot, t)`` and, for views without aggregations, their rows.
        """
        if not events.num_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), {}
        out: pd.DataFrame | None = None
        if self.udf_view is not None:
            hidden = [name for name in events.column_names if name in KAFKA_COLUMNS]
            kept, out = frames.run_udf(self.udf_view, events.drop_columns(hidden), t)
            if len(kept) < events.num_rows or not np.array_equal(kept, np.arange(len(kept))):
                events, t, c, o, p = events.take(pa.array(kept)), t[kept], c[kept], o[kept], p[kept]
            if not events.num_rows:
                return np.zeros(0, np.int64), np.zeros(0, np.int64), {}
        slot = self.keys.slots(events, p)
        if self.keys.count > self.runs.slots:
            self.runs.add_slots(self.keys.count - self.runs.slots)
        order = np.lexsort((o, c, t, slot))
        sorted_slot, sorted_t = slot[order], t[order]
        last = np.empty(len(order), np.bool_)  # the last of each run of one identity
        last[:-1] = changes(sorted_slot, sorted_t)[1:]
        last[-1] = True
        win = order if last.all() else order[last]  # one candidate per identity, sorted by (slot, t)
        win_slot, win_t = slot[win], t[win]
        pos, found = self.runs.find(win_slot, win_t)
        if not found.any():  # no identity seen before (the common case): every candidate is a new entry
            values, rows = self._values(events, win, out)
            self.runs.insert(win_slot, win_t, {"c": c[win], "o": o[win], **values})
            return win_slot, win_t, rows
        old_c, old_o = self.runs.cols["c"][pos[found]], self.runs.cols["o"][pos[found]]
        beats = (c[win][found] > old_c) | ((c[win][found] == old_c) & (o[win][found] > old_o))
        replace = np.zeros(len(win), np.bool_)
        replace[np.flatnonzero(found)[beats]] = True
        fresh = ~found
        changed = win[replace | fresh]  # indices into events, sorted by (slot, t)
        values, rows = self._values(events, changed, out)
        at = pos[replace]
        sel_replace = replace[replace | fresh]
        self.runs.write(
            at,
            {
                "c": c[changed][sel_replace],
                "o": o[changed][sel_replace],
                **{k: v[sel_replace] for k, v in values.items()},
            },
        )
        new = ~sel_replace
        self.runs.insert(
            slot[changed][new],
            t[changed][new],
            {"c": c[changed][new], "o": o[changed][new], **{k: v[new] for k, v in values.items()}},
        )
        return slot[changed], t[changed], rows

    def _values(
        self, events: pa.Table, changed: I64, out: pd.DataFrame | None
    ) -> tuple[dict[str, np.ndarray], dict[str, pa.Table]]:
        """Per view: the aggregated columns of the new winners ``events[changed]``; the rows of views
        without aggregations. ``out`` is the udf's output, row for row with ``events``, if there is a udf."""
        values: dict[str, np.ndarray] = {}
        rows: dict[str, pa.Table] = {}
        n = len(changed)
        winners = events.take(pa.array(changed)) if any(not v.view.aggregations for v in self.views) else None
        won = None if out is None else out.iloc[changed].reset_index(drop=True)
        for v in self.views:
            view = v.view
            for column, (name, numeric) in v.columns.items():
                if won is not None and column in won.columns:
                    values[name] = frames.to_float(won[column], numeric, column)
                elif won is None and column in events.column_names:
                    values[name] = frames.to_float(events.column(column), numeric, column)[changed]
                elif n:
                    raise DefinitionError(f"stream feature view '{view.name}': no column '{column}' to aggregate")
                else:
                    values[name] = np.zeros(0)
            if not view.aggregations and n:
                assert winners is not None
                rows[view.name] = self._plain_rows(v, winners, won)
        return values, rows

    def _plain_rows(self, v: _View, winners: pa.Table, out: pd.DataFrame | None) -> pa.Table:
        """Rule 8: the winning events themselves (after udf) as rows."""
        columns = {k: winners.column(k) for k in self.keys.names}
        columns[self.ts] = winners.column(self.ts).cast(frames.TIMESTAMP)
        for f in v.view.features:
            if out is not None:
                source: object = out[f.name] if f.name in out.columns else pa.nulls(len(out))
            else:
                source = winners.column(f.name) if f.name in winners.column_names else pa.nulls(winners.num_rows)
            columns[f.name] = frames.arrow_column(source, f.dtype.arrow, f.name)
        return pa.table(columns)

    def step(
        self, accepted: pa.Table, t: I64, c: I64, o: I64, p: I64, watermarks: dict[int, int]
    ) -> dict[str, pa.Table]:
        """Ingest one micro-batch's accepted events and return the rows every view writes now."""
        slot, times, rows = self.ingest(accepted, t, c, o, p)
        for v in self.views:
            if not v.view.aggregations:
                continue
            table = self._continuous(v, slot, times) if v.slide is None else self._hopping(v, watermarks)
            if table is not None and table.num_rows:
                rows[v.view.name] = table
        self.emitted.update(watermarks)
        return rows

    def _continuous(self, v: _View, slot: I64, times: I64) -> pa.Table | None:
        """Rows at every kept event of the changed keys within ``w_max`` after each change."""
        if not len(slot):
            return None
        runs = self.runs
        start, _ = runs.find(slot, times)
        hi = runs.hi[slot]
        stop = hi.copy()  # a key's newest entry is its run's last: nothing after it
        older = np.flatnonzero(start < hi - 1)
        if len(older):
            stop[older] = search(runs.t, start[older], hi[older], times[older] + v.horizon, right=False)
        if (stop - start == 1).all():  # in order: each change is its own (distinct) row
            pos, slots = start, slot
        else:
            pos, first = np.unique(ranges(start, stop - start), return_index=True)
            slots = np.repeat(slot, stop - start)[first]
        return self._rows(v, slots, runs.t[pos], pos + 1)

    def _hopping(self, v: _View, watermarks: dict[int, int]) -> pa.Table | None:
        """Rows at the window ends each partition's watermark passed in this micro-batch."""
        if not watermarks or v.slide is None or not self.runs.slots:
            return None
        s, runs, parts = v.slide, self.runs, self.keys.partitions
        size = max(int(parts.max()), *watermarks) + 1
        mark = np.full(size, _MIN, np.int64)  # per partition: its watermark (_MIN: none yet)
        first = np.full(size, _MIN, np.int64)  # the first end not written yet (_MIN: none written)
        floor = np.full(size, _MIN, np.int64)  # events at or below it read no end still to write
        for p, w in watermarks.items():
            mark[p] = w
        for p, e in self.emitted.items():
            if p < size:
                first[p] = -(-e // s) * s
                floor[p] = first[p] - v.horizon
        due = (mark != _MIN) & (first < mark)
        every = np.flatnonzero(due[parts])
        if not len(every):
            return None
        wm, fe = mark[parts[every]], first[parts[every]]
        lo = search(runs.t, runs.lo[every], runs.hi[every], floor[parts[every]], right=True)
        hi = search(runs.t, lo, runs.hi[every], wm - 1, right=True)
        pos = ranges(lo, hi - lo)
        index = np.repeat(np.arange(len(every)), hi - lo)
        owner = every[index]
        t = runs.t[pos]
        lo_end = np.maximum(-(-t // s) * s, fe[index])
        hi_end = (np.minimum(t + v.horizon - 1, wm[index] - 1) // s) * s
        count = np.maximum((hi_end - lo_end) // s + 1, 0)
        ends = np.repeat(lo_end, count) + s * ranges(np.zeros(len(count), np.int64), count)
        slots = np.repeat(owner, count)
        if not len(ends):
            return None
        order = np.lexsort((ends, slots))
        ends, slots = ends[order], slots[order]
        distinct = changes(slots, ends)
        ends, slots = ends[distinct], slots[distinct]
        stop = search(runs.t, runs.lo[slots], runs.hi[slots], ends, right=True)
        return self._rows(v, slots, ends, stop)

    def _rows(self, v: _View, slots: I64, times: I64, stop: I64) -> pa.Table:
        """The output rows at ``(slot, time)``, each window ending at index ``stop`` (exclusive)."""
        runs, view = self.runs, v.view
        lo = runs.lo[slots]
        n = len(slots)
        starts = search(
            runs.t,
            np.tile(lo, len(v.windows)),
            np.tile(stop, len(v.windows)),
            np.concatenate([times - w for w in v.windows]),
            right=True,
        )
        results: dict[str, np.ndarray] = {}
        shared: dict[tuple[str, int], Windows] = {}
        geometry: dict[int, Windows] = {}  # per window length: its ranges, split once for every column
        for agg in view.aggregations:
            block = v.windows.index(agg.window // _US)
            name, _ = v.columns[agg.column]
            if (name, block) not in shared:
                summaries = functools.partial(runs.summaries.read, runs.cols, name)
                if block in geometry:
                    shared[name, block] = geometry[block].over(runs.cols[name], summaries)
                else:
                    a = starts[block * n : (block + 1) * n]
                    shared[name, block] = geometry[block] = Windows(runs.cols[name], summaries, a, stop)
            results[agg.name] = shared[name, block].aggregate(agg.function)
        columns: dict[str, object] = {k: key.take(slots) for k, key in self.keys.columns.items()}
        # int64 µs viewed as timestamps (no copy); converting datetime64 values costs ~15x more
        columns[self.ts] = pa.array(np.ascontiguousarray(times, np.int64)).view(frames.TIMESTAMP)
        derived = frames.run_derive(view, pd.DataFrame(results)) if view.derive is not None else None
        for f in view.features:
            if derived is not None:
                values: object = derived[f.name] if f.name in derived.columns else pa.nulls(n)
            else:
                values = results[f.name] if f.name in results else pa.nulls(n)
            columns[f.name] = frames.arrow_column(values, f.dtype.arrow, f.name)
        return pa.table(columns)
