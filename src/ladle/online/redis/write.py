"""One write (or a stream of them), cut into batches and encoded lazily in the shape each client needs.

Both clients take contiguous RESP-framed keys and blobs, sliced into commands with no per-row work;
the cluster client first re-lays them in slot order (:mod:`.cluster_write`). Batches are encoded one
at a time, so client memory stays bounded and encoding overlaps the server's work.

A batch stays in :attr:`WriteRows.unacknowledged` until every reply for it has been read. When a
connection drops, the retry replays exactly those batches and then continues the input, so a stream
(materialization's ``write_batches``) survives a reconnect without being held in memory; replaying
is safe because the upsert is idempotent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ladle.online.arrays import binary_scalar
from ladle.online.codec.stamped import Prepared
from ladle.online.redis.resp import encode_pairs, encode_resp, fixed_width, row_keys_resp

Offsets = npt.NDArray[np.int64]
_NO_SEP = binary_scalar(b"")  # pa.scalar would import pandas


@dataclass(frozen=True)
class Part:
    """Checked rows of one input table: encoded entity keys and cast values."""

    entities: pa.Array
    prepared: Prepared


@dataclass
class FramedBatch:
    """Rows of one batch as RESP bulk strings, built one of two ways.

    *Separate*: keys and blobs in two buffers; row ``i``'s key is ``keys[key_offsets[i]:key_offsets[i+1]]``.
    *Fused* (fixed-width rows and keys, :func:`.resp.encode_pairs`): one record per row holding the
    framed key then the framed blob, which is already the argument layout of MSETNX; the separate
    buffers are then only made (copied out) if the upsert script needs them.
    """

    rows: int
    entities: pa.Array
    written: int = 0
    _separate: tuple[memoryview, Offsets, memoryview, Offsets] | None = field(default=None, repr=False)
    _fused: np.ndarray | None = field(default=None, repr=False)
    _pairs: tuple[memoryview, Offsets] | None = field(default=None, repr=False)

    def unique(self) -> bool:
        """Whether no entity occurs twice in the batch."""
        return unique_entities(self.entities)

    def fused_rows(self) -> npt.NDArray[np.uint8] | None:
        """The fused records as a (rows, record bytes) matrix, or None (separate buffers)."""
        if self._fused is None:
            return None
        raw = np.frombuffer(pa.py_buffer(self._fused), dtype=np.uint8)
        return raw.reshape(self.rows, self._fused.dtype.itemsize)

    def separate(self) -> tuple[memoryview, Offsets, memoryview, Offsets]:
        """Keys, key offsets, blobs and blob offsets (the argument layout of the upsert script)."""
        if self._separate is None:
            assert self._fused is not None
            # a record is the framed key then the framed blob: two column ranges of its bytes, copied
            # out as plain byte matrices (repack_fields on the void fields costs several times more)
            raw = self.fused_rows()
            assert raw is not None
            split = sum(self._fused.dtype[name].itemsize for name in ("key_head", "entity", "key_tail"))
            keys, blobs = raw[:, :split].tobytes(), raw[:, split:].tobytes()
            self._separate = (
                memoryview(keys),
                np.arange(self.rows + 1, dtype=np.int64) * split,
                memoryview(blobs),
                np.arange(self.rows + 1, dtype=np.int64) * (raw.shape[1] - split),
            )
        return self._separate

    def pairs(self) -> tuple[memoryview, Offsets]:
        """Key and blob of each row side by side (the argument layout of MSET / MSETNX)."""
        if self._pairs is None:
            if self._fused is not None:
                rec = self._fused
                self._pairs = (memoryview(pa.py_buffer(rec)), np.arange(self.rows + 1, dtype=np.int64) * rec.itemsize)
            else:
                key_data, key_offsets, blob_data, blob_offsets = self.separate()
                keys = _array(key_data, key_offsets)
                blobs = _array(blob_data, blob_offsets)
                joined = pc.binary_join_element_wise(keys, blobs, _NO_SEP)
                _, offsets_buf, data_buf = joined.buffers()
                offsets = np.frombuffer(offsets_buf, dtype=np.int64)[: self.rows + 1]
                self._pairs = (memoryview(data_buf), offsets)
        return self._pairs


def unique_entities(entities: pa.Array) -> bool:
    """Whether no value of a binary array occurs twice.

    Fixed-width values (the usual entity codes) are hashed to 64 bits column by column in NumPy and
    sorted: distinct hashes prove distinct values, ~6x cheaper than Arrow's hash-based ``unique`` on
    binary values. Equal hashes (a duplicate, or a collision) are decided exactly by ``unique``.
    """
    n = len(entities)
    width = fixed_width(entities) if n > 1 else None
    if width is not None:
        wide = np.int64 if pa.types.is_large_binary(entities.type) else np.int32
        first = int(np.frombuffer(entities.buffers()[1], dtype=wide)[entities.offset])
        matrix = np.frombuffer(entities.buffers()[2], dtype=np.uint8, count=n * width, offset=first).reshape(n, width)
        hashed = np.zeros(n, dtype=np.uint64)
        prime = np.uint64(1_099_511_628_211)
        for j in range(width):
            hashed *= prime
            hashed ^= matrix[:, j]
        hashed.sort()
        if not bool((hashed[1:] == hashed[:-1]).any()):
            return True
    return len(pc.unique(entities)) == n  # unique() is ~2x faster than count_distinct()


def merge_batches(batches: list[FramedBatch]) -> FramedBatch:
    """One batch holding the rows of ``batches`` in order (the cluster client's larger batches)."""
    if len(batches) == 1:
        return batches[0]
    rows = sum(b.rows for b in batches)
    entities = pa.concat_arrays([b.entities for b in batches])
    fused = [b._fused for b in batches if b._fused is not None]
    if len(fused) == len(batches) and len({f.dtype for f in fused}) == 1:
        # joined as raw bytes: numpy's concatenate of records with void fields copies element-wise
        joined = b"".join([memoryview(pa.py_buffer(f)) for f in fused])
        return FramedBatch(rows, entities, _fused=np.frombuffer(joined, dtype=fused[0].dtype))
    parts = [b.separate() for b in batches]
    keys = pa.concat_arrays([_array(p[0], p[1]) for p in parts])
    blobs = pa.concat_arrays([_array(p[2], p[3]) for p in parts])
    key_data, key_offsets = _buffers(keys)
    blob_data, blob_offsets = _buffers(blobs)
    return FramedBatch(rows, entities, _separate=(key_data, key_offsets, blob_data, blob_offsets))


def _buffers(array: pa.Array) -> tuple[memoryview, Offsets]:
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    return memoryview(data_buf), offsets


def _array(data: memoryview, offsets: Offsets) -> pa.Array:
    start = int(offsets[0])
    buffers = [None, pa.py_buffer(offsets - start), pa.py_buffer(data[start : int(offsets[-1])])]
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1, buffers)


def even_batches(rows: int, batch_rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the fewest batches of at most ``batch_rows`` covering ``rows``, all of one size
    (give or take a row).

    Equal sizes leave no small tail: a 50,000-row part in batches of 16,384 becomes four of 12,500
    instead of three of 16,384 and one of 848, and a batch that small would miss the MSETNX fast
    path (:data:`.upsert.FAST_PATH_ROWS`) and go through the upsert script, ~3.5x the server's work
    per row (W1b: 20 such tails, ~5% of the server's time).
    """
    count = -(-rows // batch_rows)
    return [(rows * i // count, rows * (i + 1) // count) for i in range(count)]


class WriteRows:
    """Rows of one view for one project, from one or more input tables, in batches of ``batch_rows``."""

    def __init__(self, project: str, vid: bytes, parts: Iterator[Part], batch_rows: int) -> None:
        self.project = project
        self.vid = vid
        self.batch_rows = batch_rows
        self._parts = parts
        #: (part, start, stop) of every batch handed out whose replies have not all been read.
        self.unacknowledged: deque[tuple[Part, int, int]] = deque()
        #: Rows written by acknowledged batches.
        self.written = 0

    def _specs(self, batch_rows: int) -> Iterator[tuple[Part, int, int]]:
        yield from list(self.unacknowledged)  # a retry replays what the failed attempt left unread
        for part in self._parts:
            specs = [(part, start, stop) for start, stop in even_batches(len(part.entities), batch_rows)]
            # all of a part's batches are registered at once: an attempt that dies half-way through a
            # part must leave the rest of it to the retry, which resumes with the *next* part
            self.unacknowledged.extend(specs)
            yield from specs

    def acknowledge(self, written: int) -> None:
        """The oldest outstanding batch is fully answered and wrote ``written`` rows."""
        self.unacknowledged.popleft()
        self.written += written

    def framed(self, batch_rows: int = 0) -> Iterator[FramedBatch]:
        """RESP-framed batches of ``batch_rows`` (default: the write's), in order."""
        for part, start, stop in self._specs(batch_rows or self.batch_rows):
            entities = part.entities.slice(start, stop - start)
            fused = encode_pairs(self.project, self.vid, entities, part.prepared, start, stop)
            if fused is not None:
                yield FramedBatch(stop - start, entities, _fused=fused)
                continue
            keys, key_offsets = row_keys_resp(self.project, self.vid, entities)
            blobs, blob_offsets = encode_resp(part.prepared, start, stop)
            yield FramedBatch(stop - start, entities, _separate=(keys, key_offsets, blobs, blob_offsets))
