"""Column helpers of the row format: fixed-width types, NumPy ↔ Arrow, nulls, byte gathers.

Encoders turn Arrow columns into NumPy arrays once, write them into structured records and hand the
records back to Arrow as binary arrays without copying; decoders gather byte ranges out of many
rows with index arithmetic. Nothing here walks rows in Python.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ladle.errors import SchemaMismatchError
from ladle.types import ValueType

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
TIMESTAMP_US = pa.timestamp("us", tz="UTC")

#: Every fixed-width value type: its ``struct`` code and its little-endian NumPy type. A Bool is one
#: byte (0 or 1); an UnixTimestamp is i8 µs since the epoch.
FIXED: dict[ValueType, tuple[str, np.dtype[Any]]] = {
    ValueType.INT32: ("i", np.dtype("<i4")),
    ValueType.INT64: ("q", np.dtype("<i8")),
    ValueType.FLOAT: ("f", np.dtype("<f4")),
    ValueType.DOUBLE: ("d", np.dtype("<f8")),
    ValueType.BOOL: ("?", np.dtype("u1")),
    ValueType.UNIX_TIMESTAMP: ("q", np.dtype("<i8")),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LARGE_BINARY = pa.large_binary()


def binary_scalar(raw: bytes, kind: pa.DataType = LARGE_BINARY) -> pa.Scalar:
    """A binary scalar built from buffers: ``pa.scalar`` of a Python object imports pandas (~50 MB)."""
    width = np.int64 if kind == LARGE_BINARY else np.int32
    offsets = pa.py_buffer(np.array([0, len(raw)], dtype=width))
    return pa.Array.from_buffers(kind, 1, [None, offsets, pa.py_buffer(raw)])[0]


_NUMPY_TYPES: dict[pa.DataType, np.dtype[Any]] = {
    t: np.dtype(n)
    for t, n in [
        (pa.int8(), "i1"),
        (pa.int16(), "<i2"),
        (pa.int32(), "<i4"),
        (pa.int64(), "<i8"),
        (pa.uint8(), "u1"),
        (pa.uint16(), "<u2"),
        (pa.uint32(), "<u4"),
        (pa.uint64(), "<u8"),
        (pa.float32(), "<f4"),
        (pa.float64(), "<f8"),
    ]
}


def as_numpy(array: pa.Array, fill: int | float | None = None) -> npt.NDArray[Any]:
    """A numeric or boolean array as NumPy, read from its buffers; nulls become ``fill`` when given.

    pyarrow's ``to_numpy`` (and ``fill_null`` with a Python value) imports pandas (~50 MB of a
    process) on its first call, which the write path of a materialization otherwise never needs.
    Null-free numeric arrays are a read-only view (no copy); booleans are unpacked. Arrays with nulls
    and no ``fill``, or of other types, go through ``to_numpy``.
    """
    dtype = _NUMPY_TYPES.get(array.type)
    if dtype is not None and (array.null_count == 0 or fill is not None):
        buffer = array.buffers()[1]
        if buffer is None or array.null_count == len(array):
            return np.full(len(array), 0 if fill is None else fill, dtype=dtype)
        values = np.frombuffer(buffer, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)
        if array.null_count:
            values = np.where(as_numpy(array.is_null()), np.asarray(fill, dtype=dtype), values)
        return values
    if array.null_count == 0 and pa.types.is_boolean(array.type):
        buffer = array.buffers()[1]
        if buffer is None:
            return np.empty(0, dtype=np.bool_)
        bits = np.frombuffer(buffer, dtype=np.uint8)
        return np.unpackbits(bits, count=array.offset + len(array), bitorder="little")[array.offset :].astype(np.bool_)
    out: npt.NDArray[Any] = array.to_numpy(zero_copy_only=False)
    return out


def int64_array(values: npt.NDArray[np.int64]) -> pa.Array:
    """An int64 Arrow array over a NumPy array's buffer (``pa.array`` imports pandas on its first call)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def micros_to_datetime(us: int) -> datetime:
    """A UTC datetime from microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def contiguous(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array (chunks combined, a dictionary decoded): what the encoders take apart into NumPy."""
    if isinstance(column, pa.ChunkedArray):
        # one chunk (a table made of one batch: materialization's case) needs no copy
        array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    else:
        array = column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def cast_column(name: str, column: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    """One contiguous array of ``target`` type; :class:`SchemaMismatchError` if it cannot be cast."""
    array = contiguous(column)
    try:
        return pc.cast(array, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(f"column '{name}' ({array.type}) cannot be stored as {target}: {exc}") from None


def fixed_numpy(values: pa.Array, vt: ValueType) -> npt.NDArray[Any]:
    """A NumPy array of a fixed-width column (already of the value type's Arrow type), nulls as zero."""
    if vt == ValueType.UNIX_TIMESTAMP:
        values = values.cast(pa.int64())
    elif vt == ValueType.BOOL:
        values = pc.cast(values, pa.uint8())
    out: npt.NDArray[Any] = as_numpy(values, fill=0).astype(FIXED[vt][1], copy=False)
    return out


def fixed_values(column: npt.NDArray[Any], vt: ValueType) -> list[Any]:
    """Python values of a decoded fixed-width column: bools as ``bool``, timestamps as UTC datetimes."""
    if vt == ValueType.UNIX_TIMESTAMP:
        return [micros_to_datetime(v) for v in column.tolist()]
    if vt == ValueType.BOOL:
        return column.astype(bool).tolist()  # type: ignore[no-any-return]
    return column.tolist()  # type: ignore[no-any-return]


def null_mask(array: pa.Array, values: npt.NDArray[Any] | None = None) -> npt.NDArray[np.bool_] | None:
    """Null rows of a column, or ``None`` when there are none; float NaN counts as null.

    ``values`` is the column as NumPy when the caller has it already (where NaN is looked for).
    """
    mask = as_numpy(array.is_null()) if array.null_count else None
    if pa.types.is_floating(array.type):
        nan = np.isnan(values if values is not None else array.to_numpy(zero_copy_only=False))
        if nan.any():
            mask = nan if mask is None else mask | nan
    return mask


def mark_nulls(bitmaps: npt.NDArray[np.uint8], index: int, mask: npt.NDArray[np.bool_] | None) -> None:
    """Set bit ``index`` (LSB first) of each row's null bitmap where ``mask`` is true (``None``: none).

    Per column and only when it has nulls: the usual null-free batch costs nothing here.
    """
    if mask is not None:
        bitmaps[:, index // 8] |= mask.astype(np.uint8) << (index % 8)


def binary_array(data: npt.NDArray[Any], offsets: I64, kind: pa.DataType) -> pa.Array:
    """A binary array (``kind``: binary or large_binary) whose row i is ``data[offsets[i]:offsets[i+1]]``.

    ``data`` is any contiguous array, taken as bytes; no copy is made.
    """
    start, stop = int(offsets[0]), int(offsets[-1])
    width = np.int64 if kind == LARGE_BINARY else np.int32
    flat = np.ascontiguousarray(data).reshape(-1)
    base = flat if (start, stop) == (0, flat.nbytes) else flat.view(np.uint8)[start:stop]
    buffers = [None, pa.py_buffer((offsets - start).astype(width)), pa.py_buffer(base)]
    return pa.Array.from_buffers(kind, len(offsets) - 1, buffers)


def records_array(rows: npt.NDArray[Any], kind: pa.DataType = LARGE_BINARY) -> pa.Array:
    """A binary array with one value per element of a 1-D array (its raw bytes), no copy."""
    # py_buffer takes the records as they are: no .view(uint8), whose safety check on records is slow
    offsets = np.arange(len(rows) + 1, dtype=np.int64) * rows.itemsize
    return binary_array(rows, offsets, kind)


def sized_array(values: npt.NDArray[Any], row_bytes: I64, kind: pa.DataType = LARGE_BINARY) -> pa.Array:
    """A binary array cutting the bytes of ``values`` into rows of ``row_bytes[i]`` bytes, no copy."""
    offsets = np.zeros(len(row_bytes) + 1, dtype=np.int64)
    np.cumsum(row_bytes, out=offsets[1:])
    return binary_array(values, offsets, kind)


def gather(buf: U8, starts: I64, lengths: I64) -> tuple[U8, I64]:
    """Concatenate ``buf[starts[i]:starts[i]+lengths[i]]``; return the bytes and the row offsets."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    return buf[index], offsets


def read_u32(buf: U8, starts: I64) -> I64:
    """The little-endian u32 at each of ``starts``."""
    four = buf[starts[:, None] + np.arange(4)]
    return np.ascontiguousarray(four).view("<u4")[:, 0].astype(np.int64)
