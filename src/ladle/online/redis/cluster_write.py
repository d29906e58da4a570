"""Writes to a Redis Cluster: each batch sorted by slot, one pipeline per master, masters in parallel.

A multi-key command cannot span slots, and row keys are hash-tagged by entity, so a batch is sorted
by slot (:func:`.slots.entity_slots`, vectorized) and cut into groups of at most ``chunk_rows`` rows
of one slot. Like the single-node path (:mod:`.upsert`), a group of new keys goes as one ``MSETNX``
(native, all-or-nothing); a group MSETNX refuses (a key exists), and every group when keys expire or
the view's last write found its keys already there, goes through the upsert script, which compares
timestamps on the server. Newest-event-wins holds either way.

Commands are framed from the batch's contiguous RESP buffers (Arrow ``take`` puts the rows in slot
order), so no per-row Python runs; the per-group loop only slices. While the masters apply batch k,
batch k+1 is encoded (:func:`.fanout.fan_out` runs each master on its own thread).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ladle.online.arrays import int64_array
from ladle.online.redis.fanout import Cluster, fan_out, slot_table
from ladle.online.redis.scripts import UPSERT_SHA
from ladle.online.redis.slots import entity_slots
from ladle.online.redis.write import FramedBatch, WriteRows, merge_batches

Offsets = npt.NDArray[np.int64]
_SHA_ARG = b"$40\r\n%b\r\n" % UPSERT_SHA
_UNIQUE, _MAYBE_REPEATED = b"$1\r\n1\r\n", b"$1\r\n0\r\n"


def _binary(data: memoryview, offsets: Offsets) -> pa.Array:
    start = int(offsets[0])
    buffers = [None, pa.py_buffer(offsets - start), pa.py_buffer(data[start : int(offsets[-1])])]
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1, buffers)


def _ordered(data: memoryview, offsets: Offsets, order: npt.NDArray[np.int64]) -> tuple[memoryview, Offsets]:
    """Rows of a contiguous buffer re-laid in ``order`` (one Arrow take)."""
    taken = _binary(data, offsets).take(int64_array(order))
    _, offsets_buf, data_buf = taken.buffers()
    out = np.frombuffer(offsets_buf, dtype=np.int64)[taken.offset : taken.offset + len(taken) + 1]
    return memoryview(data_buf), out


Pieces = list[tuple[bytes | memoryview, ...]]


@dataclass
class _Commands:
    """Commands for some groups of a batch: (slot, pieces) each, and which groups they are."""

    kind: str  # "msetnx" | "script"
    groups: list[int]
    slots: list[int]
    pieces: Pieces


@dataclass
class _SortedBatch:
    """One batch in slot order, cut into groups of one slot; what it wrote and what MSETNX refused."""

    batch: FramedBatch
    order: npt.NDArray[np.int64]  # (NumPy: pyarrow's to_numpy and pa.array import pandas on first use)
    slots: list[int]
    starts: list[int]
    stops: list[int]
    unique: bool
    written: int = 0
    refused: list[int] = field(default_factory=list)
    specs: int = 1  # input batches (of WriteRows) merged into this one
    _pairs: tuple[memoryview, list[int]] | None = None
    _separate: tuple[memoryview, list[int], memoryview, list[int]] | None = None

    def pairs(self) -> tuple[memoryview, list[int]]:
        if self._pairs is None:
            fused = self.batch.fused_rows()
            if fused is not None:  # fixed-width records: a row gather in NumPy (Arrow's take is slower)
                width = fused.shape[1]
                gathered = fused[self.order]
                self._pairs = (gathered.data.cast("B"), list(range(0, (len(gathered) + 1) * width, width)))
            else:
                data, offsets = _ordered(*self.batch.pairs(), self.order)
                self._pairs = (data, offsets.tolist())
        return self._pairs

    def separate(self) -> tuple[memoryview, list[int], memoryview, list[int]]:
        if self._separate is None:
            key_data, key_offsets, blob_data, blob_offsets = self.batch.separate()
            keys, key_at = _ordered(key_data, key_offsets, self.order)
            blobs, blob_at = _ordered(blob_data, blob_offsets, self.order)
            self._separate = (keys, key_at.tolist(), blobs, blob_at.tolist())
        return self._separate


def sort_batch(project: str, batch: FramedBatch, chunk_rows: int) -> _SortedBatch:
    """The batch's rows in slot order, cut into groups of one slot and at most ``chunk_rows`` rows."""
    slots = entity_slots(project, batch.entities)
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    bounds = np.flatnonzero(np.diff(ordered)) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(ordered)]))
    if int((stops - starts).max(initial=0)) > chunk_rows:  # rare: split the big groups
        cut_starts, cut_stops = [], []
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            for s in range(a, b, chunk_rows):
                cut_starts.append(s)
                cut_stops.append(min(s + chunk_rows, b))
        starts, stops = np.array(cut_starts, dtype=np.int64), np.array(cut_stops, dtype=np.int64)
    return _SortedBatch(batch, order, ordered[starts].tolist(), starts.tolist(), stops.tolist(), unique=batch.unique())


class ClusterUpsert:
    """One write of a :class:`WriteRows` to a cluster: MSETNX first when ``fast``, else the script."""

    def __init__(
        self, project: str, chunk_rows: int, ttl_ms: int, fast: bool, address: str, pools: tuple[Executor, Executor]
    ) -> None:
        self.project = project
        self.chunk_rows = chunk_rows
        self.ttl_arg = b"$%d\r\n%d\r\n" % (len(b"%d" % ttl_ms), ttl_ms)
        self.fast = fast and not ttl_ms
        self.address = address
        # one thread runs a batch's round trip (so the next batch is encoded meanwhile), the other pool
        # serves the masters concurrently (fan_out); two pools, so the first never waits on itself
        self.dispatcher, self.pool = pools
        self.tried = self.refused = 0
        self._table: list[Any] | None = None

    @property
    def went_fast(self) -> bool:
        """Whether most MSETNX groups of this write were new keys (a hint for the view's next write)."""
        return self.tried > 0 and self.refused * 2 < self.tried

    def run(self, cluster: Cluster, rows: WriteRows, batch_rows: int) -> int:
        """Send every batch (batch k+1 is encoded while the masters apply batch k); return rows written."""
        self._table = slot_table(cluster)
        in_flight: tuple[_SortedBatch, _Commands, Future[list[Any]]] | None = None
        for batch, specs in _gathered(rows, batch_rows):
            sent = sort_batch(self.project, batch, self.chunk_rows)
            sent.specs = specs
            groups = list(range(len(sent.slots)))
            commands = self._msetnx(sent, groups) if self.fast and sent.unique else self._script(sent, groups)
            if in_flight is not None:
                self._finish(cluster, rows, *in_flight)
            in_flight = (sent, commands, self._send(cluster, commands))
        if in_flight is not None:
            self._finish(cluster, rows, *in_flight)
        return rows.written

    def _send(self, cluster: Cluster, commands: _Commands) -> Future[list[Any]]:
        wire = (commands.slots, commands.pieces)
        return self.dispatcher.submit(fan_out, cluster, wire, self.address, self.pool, self._table)

    def _finish(
        self, cluster: Cluster, rows: WriteRows, sent: _SortedBatch, commands: _Commands, done: Future[list[Any]]
    ) -> None:
        self._apply(sent, commands, done.result())
        if sent.refused:  # MSETNX found existing keys: those groups go through the script
            resend = self._script(sent, sent.refused)
            sent.refused = []
            self._apply(sent, resend, self._send(cluster, resend).result())
        rows.acknowledge(sent.written)
        for _ in range(sent.specs - 1):  # the other input batches merged into this one
            rows.acknowledge(0)

    def _apply(self, sent: _SortedBatch, commands: _Commands, replies: list[Any]) -> None:
        if commands.kind == "script":
            sent.written += sum(int(r) for r in replies)
            return
        starts, stops = sent.starts, sent.stops
        for g, reply in zip(commands.groups, replies, strict=True):
            if int(reply) == 1:
                sent.written += stops[g] - starts[g]
            else:
                sent.refused.append(g)
                self.refused += 1

    def _msetnx(self, sent: _SortedBatch, groups: list[int]) -> _Commands:
        data, at = sent.pairs()
        starts, stops = sent.starts, sent.stops
        pieces: Pieces = []
        for g in groups:
            a, b = starts[g], stops[g]
            pieces.append((_msetnx_head(b - a), data[at[a] : at[b]]))
        self.tried += len(groups)
        return _Commands("msetnx", groups, [sent.slots[g] for g in groups], pieces)

    def _script(self, sent: _SortedBatch, groups: list[int]) -> _Commands:
        keys, key_at, blobs, blob_at = sent.separate()
        starts, stops = sent.starts, sent.stops
        flag = _UNIQUE if sent.unique else _MAYBE_REPEATED
        pieces: Pieces = []
        for g in groups:
            a, b = starts[g], stops[g]
            pieces.append(
                (_script_head(b - a), keys[key_at[a] : key_at[b]], self.ttl_arg, flag, blobs[blob_at[a] : blob_at[b]])
            )
        return _Commands("script", groups, [sent.slots[g] for g in groups], pieces)


def _gathered(rows: WriteRows, batch_rows: int) -> Iterator[tuple[FramedBatch, int]]:
    """Input batches merged up to ``batch_rows`` rows (more rows per slot, fewer commands), with their count."""
    held: list[FramedBatch] = []
    count = 0
    for batch in rows.framed():
        held.append(batch)
        count += batch.rows
        if count >= batch_rows:
            yield merge_batches(held), len(held)
            held, count = [], 0
    if held:
        yield merge_batches(held), len(held)


@lru_cache(maxsize=4096)
def _msetnx_head(rows: int) -> bytes:
    return b"*%d\r\n$6\r\nMSETNX\r\n" % (2 * rows + 1)


@lru_cache(maxsize=4096)
def _script_head(rows: int) -> bytes:
    count = b"%d" % rows
    return b"*%d\r\n$7\r\nEVALSHA\r\n%b$%d\r\n%b\r\n" % (2 * rows + 5, _SHA_ARG, len(count), count)
