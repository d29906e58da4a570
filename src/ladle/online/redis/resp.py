"""RESP framing done in bulk: keys, values and whole commands as contiguous bytes ready to send.

Single-node writes and reads skip redis-py's per-argument packing: Arrow kernels frame every key and
value of a batch as RESP bulk strings (``$<len>\\r\\n<bytes>\\r\\n``) into one buffer, with row offsets,
so a command is a few slices of it; a fixed-width row is even built framed in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.online.arrays import I64
from ladle.online.codec.stamped import Prepared, ViewLayout, encode, fill
from ladle.online.redis.keys import key_prefix, key_suffix


def resp_row_keys(project: str, vid: bytes, entities: Sequence[bytes]) -> bytes:
    """Row keys of one view framed as RESP bulk strings, concatenated (the body of an MGET).

    When every entity has the same length (fixed-format codes, the common case) the whole body is
    one C-level ``join``; otherwise one format per key.
    """
    pre, suf = key_prefix(project), key_suffix(vid)
    if not entities:
        return b""
    widths = set(map(len, entities))
    if len(widths) == 1:
        head = b"$%d\r\n" % (len(pre) + widths.pop() + len(suf))
        return head + pre + (suf + b"\r\n" + head + pre).join(entities) + suf + b"\r\n"
    fixed = len(pre) + len(suf)
    return b"".join([b"$%d\r\n%b%b%b\r\n" % (fixed + len(e), pre, e, suf) for e in entities])


def row_keys_resp(project: str, vid: bytes, entities: pa.Array) -> tuple[memoryview, np.ndarray]:
    """Full row keys framed as RESP bulk strings in one Arrow kernel (see :func:`resp_bulk`)."""
    pre, suf = key_prefix(project), key_suffix(vid)
    kind = entities.type

    def const(raw: bytes) -> pa.Scalar:
        return pa.scalar(raw, kind)

    lengths = pc.cast(pc.cast(pc.add(pc.binary_length(entities), len(pre) + len(suf)), pa.string()), kind)
    framed = pc.binary_join_element_wise(
        const(b"$"), lengths, const(b"\r\n" + pre), entities, const(suf + b"\r\n"), const(b"")
    )
    return _contiguous(framed)


def resp_bulk(values: pa.Array) -> tuple[memoryview, np.ndarray]:
    """Frame every value as a RESP bulk string; return the contiguous bytes and row offsets.

    Row ``i`` occupies ``data[offsets[i]:offsets[i + 1]]``, so any run of rows is one slice.
    """
    kind = values.type

    def const(raw: bytes) -> pa.Scalar:
        return pa.scalar(raw, kind)

    lengths = pc.cast(pc.cast(pc.binary_length(values), pa.string()), kind)
    framed = pc.binary_join_element_wise(const(b"$"), lengths, const(b"\r\n"), values, const(b"\r\n"), const(b""))
    return _contiguous(framed)


def _contiguous(array: pa.Array) -> tuple[memoryview, np.ndarray]:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    width = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=width)[array.offset : array.offset + len(array) + 1]
    return memoryview(data_buf), offsets.astype(np.int64)


def resp_command(*args: bytes) -> bytes:
    """A whole command in RESP, for small fixed commands."""
    out = [b"*%d\r\n" % len(args)]
    out += [b"$%d\r\n%b\r\n" % (len(a), a) for a in args]
    return b"".join(out)


@lru_cache(maxsize=1024)
def _framed_record(layout: ViewLayout) -> np.dtype:
    """A fixed-width layout's record between a RESP bulk-string header and trailer."""
    head = len(b"$%d\r\n" % layout.size)
    return np.dtype([("resp_head", f"S{head}"), ("row", layout.record), ("resp_tail", "S2")])


def fixed_width(entities: pa.Array) -> int | None:
    """The byte length shared by every entity key, or None if they differ (or any is null)."""
    if entities.null_count or not len(entities):
        return None
    width = np.int64 if pa.types.is_large_binary(entities.type) else np.int32
    offsets = np.frombuffer(entities.buffers()[1], dtype=width)[entities.offset : entities.offset + len(entities) + 1]
    lengths = np.diff(offsets)
    first = int(lengths[0])
    return first if first > 0 and bool((lengths == first).all()) else None


@lru_cache(maxsize=1024)
def _pair_record(layout: ViewLayout, key_head: bytes, key_width: int, key_tail: bytes) -> np.dtype:
    """One MSET argument pair framed in RESP: key bulk string then value bulk string."""
    value_head = len(b"$%d\r\n" % layout.size)
    return np.dtype(
        [
            ("key_head", f"V{len(key_head)}"),
            ("entity", f"V{key_width}"),
            ("key_tail", f"V{len(key_tail)}"),
            ("value_head", f"V{value_head}"),
            ("row", layout.record),
            ("value_tail", "V2"),
        ]
    )


def encode_pairs(
    project: str, vid: bytes, entities: pa.Array, prepared: Prepared, start: int, stop: int
) -> np.ndarray | None:
    """Rows ``start:stop`` as RESP-framed (key, value) pairs in one record array, or None.

    Possible when the layout is fixed-width and every entity key has the same length (fixed-format
    codes: the common case): the whole batch is then one numpy record array filled column by
    column, with no per-row concatenation. ``entities`` are the batch's rows (already sliced).
    """
    layout = prepared.layout
    key_width = fixed_width(entities) if not layout.variable else None
    if key_width is None:
        return None
    pre, suf = key_prefix(project), key_suffix(vid)
    key_head = b"$%d\r\n" % (len(pre) + key_width + len(suf)) + pre
    key_tail = suf + b"\r\n"
    framed = _pair_record(layout, key_head, key_width, key_tail)
    n = stop - start
    rec = np.zeros(n, dtype=framed)
    rec["key_head"] = np.frombuffer(key_head, dtype=f"V{len(key_head)}")[0]
    rec["key_tail"] = np.frombuffer(key_tail, dtype=f"V{len(key_tail)}")[0]
    rec["value_head"] = np.frombuffer(b"$%d\r\n" % layout.size, dtype=framed["value_head"])[0]
    rec["value_tail"] = np.frombuffer(b"\r\n", dtype="V2")[0]
    data = entities.buffers()[2]
    width = np.int64 if pa.types.is_large_binary(entities.type) else np.int32
    first = int(np.frombuffer(entities.buffers()[1], dtype=width)[entities.offset])
    rec["entity"] = np.frombuffer(data, dtype=f"V{key_width}", count=n, offset=first)
    fill(prepared, rec["row"], start, stop)
    return rec


def encode_resp(prepared: Prepared, start: int, stop: int) -> tuple[memoryview, I64]:
    """Blobs of rows ``start:stop`` framed as RESP bulk strings, contiguous, with row offsets.

    A fixed-width layout is built framed in place (the bulk-string header and trailer are fields of
    the numpy record), so no per-row concatenation happens at all.
    """
    layout = prepared.layout
    if layout.variable:
        return resp_bulk(encode(prepared, start, stop))
    n = stop - start
    framed = _framed_record(layout)
    rec = np.zeros(n, dtype=framed)
    rec["resp_head"] = b"$%d\r\n" % layout.size
    rec["resp_tail"] = b"\r\n"
    fill(prepared, rec["row"], start, stop)
    offsets = np.arange(n + 1, dtype=np.int64) * framed.itemsize
    return rec.view(np.uint8).data, offsets
