"""Byte encoding of list values (``Array(...)`` dtypes), and column helpers for the row codec.

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

from ladle.types import DType, ValueType

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEAD = struct.Struct("<IB")
FIXED: dict[ValueType, tuple[str, np.dtype[Any]]] = {
    ValueType.INT32: ("i", np.dtype("<i4")),
    ValueType.INT64: ("q", np.dtype("<i8")),
    ValueType.FLOAT: ("f", np.dtype("<f4")),
    ValueType.DOUBLE: ("d", np.dtype("<f8")),
    ValueType.BOOL: ("?", np.dtype("u1")),
    ValueType.UNIX_TIMESTAMP: ("q", np.dtype("<i8")),
}
_EMPTY = pa.scalar(b"", pa.binary())


def micros_to_datetime(us: int) -> datetime:
    """A UTC datetime from microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def is_fixed(dtype: DType) -> bool:
    """Whether values of ``dtype`` have a fixed width (numbers, bools, timestamps)."""
    return dtype.value_type in FIXED


# -- list values --------------------------------------------------------------------------------


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
    parts: list[Any] = [fixed_binary(head, arr.buffers()[0], arr.offset)]
    vt = element.value_type
    if vt in FIXED:
        width = FIXED[vt][1].itemsize
        flat = fixed_numpy(values, element)
        parts.append(_slices(flat.view(np.uint8), offsets * width))
    else:
        binary = values.cast(pa.binary())
        voffs = np.frombuffer(binary.buffers()[1], np.int32, len(binary) + 1, 4 * binary.offset).astype(np.int64)
        lengths = np.diff(voffs).astype("<u4")
        parts.append(_slices(lengths.view(np.uint8), offsets * 4))
        data = np.frombuffer(binary.buffers()[2] or b"", np.uint8)
        parts.append(_slices(data, voffs[offsets]))
    return pc.binary_join_element_wise(*parts, _EMPTY, null_handling="emit_null")


def fixed_numpy(values: pa.Array, dtype: DType) -> np.ndarray[Any, Any]:
    """A NumPy array of a fixed-width Arrow column, nulls as zero."""
    vt = dtype.value_type
    np_type = FIXED[vt][1]
    if vt == ValueType.UNIX_TIMESTAMP:
        values = values.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    elif vt == ValueType.BOOL:
        values = values.cast(pa.uint8())
    if values.null_count:
        values = values.fill_null(0)
    return np.ascontiguousarray(values.to_numpy(zero_copy_only=False), dtype=np_type)


def _slices(data: np.ndarray[Any, Any], starts: np.ndarray[Any, Any]) -> pa.Array:
    """A binary array whose row i is ``data[starts[i]:starts[i+1]]`` (zero copy)."""
    n = len(starts) - 1
    offs = starts - starts[0]
    base = data[int(starts[0]) : int(starts[-1])]
    return pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offs.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(base))]
    )


def fixed_binary(rows: np.ndarray[Any, Any], validity: pa.Buffer | None = None, offset: int = 0) -> pa.Array:
    """A binary array with one value per element of a contiguous 1-D array (its raw bytes)."""
    n, width = len(rows), rows.itemsize
    # py_buffer takes any contiguous array: no .view(uint8), whose safety check on records is slow
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(np.ascontiguousarray(rows))])
    out = arr.cast(pa.binary())
    if validity is not None:
        mask = pa.Array.from_buffers(pa.bool_(), n, [None, validity], offset=offset)
        out = pc.if_else(mask, out, pa.scalar(None, pa.binary()))
    return out


def null_mask(col: pa.Array) -> np.ndarray[Any, Any]:
    """Row null mask of a column as a bool NumPy array (float NaN counts as null)."""
    mask = col.is_null(nan_is_null=True) if pa.types.is_floating(col.type) else col.is_null()
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
