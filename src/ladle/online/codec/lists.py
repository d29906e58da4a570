"""Byte encoding of list values (``Array(...)`` dtypes) inside versioned row blobs (:mod:`.versioned`).

One list value → bytes, little-endian (format also in docs/online.md)::

    u32 count | u8 flags (bit 0: some elements are null) | [validity bitmap, ceil(count/8) bytes]
    fixed-width elements: count x width (Int32 4, Int64 8, Float32 4, Float64 8, Bool 1,
                          UnixTimestamp 8 = µs since the epoch); a null element is zeros
    String / Bytes elements: count x u32 byte lengths, then the bytes back to back

Bitmaps are LSB-first. NaN inside a list stays NaN (only a scalar NaN feature means null).
:func:`encode_list_column` encodes a whole Arrow list column with zero-copy buffer slicing and
Arrow's ``binary_join_element_wise``; no Python loop unless elements contain nulls.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.online.arrays import FIXED, binary_array, fixed_numpy, micros_to_datetime, records_array
from ladle.types import DType, ValueType

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEAD = struct.Struct("<IB")
_EMPTY = pa.scalar(b"", pa.binary())


def encode_list(values: Sequence[Any] | None, element: DType) -> bytes | None:
    """Encode one list value (``None`` stays ``None``)."""
    if values is None:
        return None
    vt = element.value_type
    count = len(values)
    nulls = [v is None for v in values]
    head = _HEAD.pack(count, 1 if any(nulls) else 0)
    if any(nulls):
        head += np.packbits(~np.array(nulls, dtype=bool), bitorder="little").tobytes()
    if vt in FIXED:
        code, _ = FIXED[vt]
        zero: Any = False if vt == ValueType.BOOL else 0
        items = [zero if v is None else _to_fixed(v, vt) for v in values]
        return head + struct.pack(f"<{count}{code}", *items)
    raw = [b"" if v is None else (v.encode() if isinstance(v, str) else bytes(v)) for v in values]
    return head + struct.pack(f"<{count}I", *map(len, raw)) + b"".join(raw)


def _to_fixed(value: Any, vt: ValueType) -> Any:
    if vt == ValueType.UNIX_TIMESTAMP and isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // timedelta(microseconds=1)
    return value


def decode_list(blob: bytes | None, element: DType) -> list[Any] | None:
    """Decode one list value written by :func:`encode_list`."""
    if blob is None:
        return None
    count, flags = _HEAD.unpack_from(blob, 0)
    pos = _HEAD.size
    valid: list[bool] | None = None
    if flags & 1:
        nbytes = (count + 7) // 8
        bits = np.unpackbits(np.frombuffer(blob, np.uint8, nbytes, pos), count=count, bitorder="little")
        valid = bits.astype(bool).tolist()
        pos += nbytes
    vt = element.value_type
    if vt in FIXED:
        out: list[Any] = list(struct.unpack_from(f"<{count}{FIXED[vt][0]}", blob, pos))
        if vt == ValueType.UNIX_TIMESTAMP:
            out = [micros_to_datetime(v) for v in out]
    else:
        lengths = struct.unpack_from(f"<{count}I", blob, pos)
        pos += 4 * count
        out = []
        for length in lengths:
            out.append(blob[pos : pos + length])
            pos += length
        if vt == ValueType.STRING:
            out = [b.decode() for b in out]
    if valid is not None:
        out = [v if ok else None for v, ok in zip(out, valid, strict=True)]
    return out


def encode_list_column(column: pa.Array | pa.ChunkedArray, element: DType) -> pa.Array:
    """Encode a whole list column into a binary array (nulls stay null), without a Python loop.

    Columns whose elements contain nulls take the per-value path.
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = arr.cast(pa.list_(element.arrow))
    values = arr.values
    offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    lo, hi = int(offsets[0]), int(offsets[-1])
    if values.slice(lo, hi - lo).null_count:
        return pa.array([encode_list(v, element) for v in arr.to_pylist()], pa.binary())
    n = len(arr)
    counts = np.diff(offsets)
    head = np.zeros(n, dtype=[("count", "<u4"), ("flags", "u1")])
    head["count"] = counts
    parts: list[Any] = [_with_validity(records_array(head, pa.binary()), arr.buffers()[0], arr.offset)]
    vt = element.value_type
    if vt in FIXED:
        width = FIXED[vt][1].itemsize
        flat = fixed_numpy(values, vt)
        parts.append(binary_array(flat, offsets * width, pa.binary()))
    else:
        binary = values.cast(pa.binary())
        voffs = np.frombuffer(binary.buffers()[1], np.int32, len(binary) + 1, 4 * binary.offset).astype(np.int64)
        lengths = np.diff(voffs).astype("<u4")
        parts.append(binary_array(lengths, offsets * 4, pa.binary()))
        data = np.frombuffer(binary.buffers()[2] or b"", np.uint8)
        parts.append(binary_array(data, voffs[offsets], pa.binary()))
    return pc.binary_join_element_wise(*parts, _EMPTY, null_handling="emit_null")


def _with_validity(values: pa.Array, validity: pa.Buffer | None, offset: int) -> pa.Array:
    """``values`` with the rows a validity bitmap marks null set to null."""
    if validity is None:
        return values
    mask = pa.Array.from_buffers(pa.bool_(), len(values), [None, validity], offset=offset)
    return pc.if_else(mask, values, pa.scalar(None, values.type))
