"""``GetOnlineFeaturesResponse`` encoded straight to protobuf bytes (the gRPC hot path).

Building one ``Value`` message object per value costs about a microsecond each in Python, which
for 100 entities x 8 features is most of a request. The response's wire format is small and fixed
(``ServingService.proto``), so it is written directly: whole float and bool columns with one NumPy
``tobytes()``, other values from a few precomputed byte pieces, timestamps and status lists once
per distinct list. ``tests/unit/test_server_grpc.py`` checks the bytes parse back to the same
message the generated classes build.

Wire layout (field number, wire type)::

    GetOnlineFeaturesResponse: metadata (1, LEN), results (2, LEN, repeated)
    GetOnlineFeaturesResponseMetadata: feature_names (1, LEN) -> FeatureList: val (1, LEN, repeated)
    FeatureVector: values (1, LEN, repeated Value), statuses (2, packed varints),
                   event_timestamps (3, LEN, repeated Timestamp{seconds (1), nanos (2)})
    Value: oneof, tag = ValueType number (lists: XList{val (1), packed for numbers})
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ladle.retrieval.plan import OnlinePlan, ViewRead
from ladle.retrieval.response import OnlineResponse
from ladle.types import DType, ValueType

_SMALL = [bytes([i]) for i in range(128)]
_TIMESTAMP_CACHE: dict[int, bytes] = {}
_TIMESTAMP_CACHE_MAX = 1 << 16
_EMPTY_VALUE = b"\x0a\x00"  # a FeatureVector.values entry holding an empty Value (null)


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative numbers as 64-bit two's complement (int32/int64 rule)."""
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def epoch_seconds(value: datetime) -> int:
    """Whole seconds since the epoch (floored; naive means UTC), Feast's ``unix_timestamp_val``."""
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() // 1)


# One Value message per Python value, by value type (tag byte = field number << 3 | wire type).
_SCALAR: dict[ValueType, Callable[[Any], bytes]] = {
    ValueType.BYTES: lambda v: _len_field(b"\x0a", bytes(v)),
    ValueType.STRING: lambda v: _len_field(b"\x12", v.encode()),
    ValueType.INT32: lambda v: b"\x18" + varint(v),
    ValueType.INT64: lambda v: b"\x20" + varint(v),
    ValueType.DOUBLE: lambda v: b"\x29" + struct.pack("<d", v),
    ValueType.FLOAT: lambda v: b"\x35" + struct.pack("<f", v),
    ValueType.BOOL: lambda v: b"\x38\x01" if v else b"\x38\x00",
    ValueType.UNIX_TIMESTAMP: lambda v: b"\x40" + varint(epoch_seconds(v)),
}


def _packed(items: Sequence[Any], element: ValueType) -> bytes:
    if not items:
        return b""
    if element == ValueType.DOUBLE:
        body = np.asarray(items, dtype="<f8").tobytes()
    elif element == ValueType.FLOAT:
        body = np.asarray(items, dtype="<f4").tobytes()
    elif element == ValueType.BOOL:
        body = bytes(1 if x else 0 for x in items)
    elif element == ValueType.UNIX_TIMESTAMP:
        body = b"".join(varint(epoch_seconds(x)) for x in items)
    else:  # INT32, INT64
        body = b"".join(varint(x) for x in items)
    return _len_field(b"\x0a", body)


def _list_value(value_type: ValueType) -> Callable[[Any], bytes]:
    element = ValueType(value_type - 10)
    tag = varint(value_type << 3 | 2)
    if element == ValueType.STRING:
        return lambda v: _len_field(tag, b"".join(_len_field(b"\x0a", x.encode()) for x in v))
    if element == ValueType.BYTES:
        return lambda v: _len_field(tag, b"".join(_len_field(b"\x0a", bytes(x)) for x in v))
    return lambda v: _len_field(tag, _packed(v, element))


_NULL_VALUE = b"\x98\x01\x00"  # null_val (19) = NULL (0)


def _document_value(value: Any) -> bytes:
    """A ``Value`` for one element of a Map / Struct document (type inferred from the JSON value)."""
    if value is None:
        return _NULL_VALUE
    if isinstance(value, dict):
        return _map_message(b"\xa2\x01", value)  # map_val (20)
    if isinstance(value, list):
        present = [v for v in value if v is not None]
        if present and all(isinstance(v, dict) for v in present):  # map_list_val (21): MapList{repeated Map val = 1}
            maps = b"".join(_len_field(b"\x0a", _map_entries(v)) for v in present)
            return _len_field(b"\xaa\x01", maps)
        kinds = {_inferred(v) for v in present}
        if len(kinds) == 1 and len(present) == len(value) and next(iter(kinds)) in _SCALAR:
            return _ENCODERS[ValueType(next(iter(kinds)) + 10)](value)
        # list_val (42): RepeatedValue{repeated Value val = 1}
        return _len_field(b"\xd2\x02", b"".join(_len_field(b"\x0a", _document_value(v)) for v in value))
    return _SCALAR[_inferred(value)](value)


def _map_entries(value: dict[str, Any]) -> bytes:
    """The entries of a protobuf ``map<string, Value>`` (field 1): {key (1), value (2)} each."""
    entries = []
    for key, item in value.items():
        entry = _len_field(b"\x0a", str(key).encode()) + _len_field(b"\x12", _document_value(item))
        entries.append(_len_field(b"\x0a", entry))
    return b"".join(entries)


def _map_message(tag: bytes, value: dict[str, Any]) -> bytes:
    return _len_field(tag, _map_entries(value))


def _json_value(value: Any) -> bytes:
    from ladle.documents import dumps

    return _len_field(b"\x82\x02", dumps(value).encode())  # json_val (32): the JSON text


_ENCODERS: dict[ValueType, Callable[[Any], bytes]] = {
    **_SCALAR,
    **{vt: _list_value(vt) for vt in ValueType if ValueType.BYTES_LIST <= vt <= ValueType.UNIX_TIMESTAMP_LIST},
    ValueType.MAP: lambda v: _map_message(b"\xa2\x01", v),  # map_val (20): Map{map<string, Value> val = 1}
    ValueType.STRUCT: lambda v: _map_message(b"\x92\x02", v),  # struct_val (34): a Map message
    ValueType.JSON: _json_value,
}
# Fixed-size values whose column can be written by NumPy in one go: (entry header, element dtype).
_FIXED = {
    ValueType.DOUBLE: (b"\x0a\x09\x29", "<f8"),
    ValueType.FLOAT: (b"\x0a\x05\x35", "<f4"),
    ValueType.BOOL: (b"\x0a\x02\x38", "u1"),
}
# Up to this many rows one cached struct.Struct packs a whole column faster than NumPy.
_STRUCT_MAX_ROWS = 1000
_NAMES_CACHE: dict[tuple[str, ...], bytes] = {}


def _inferred(value: Any) -> ValueType:
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, int):
        return ValueType.INT64
    if isinstance(value, float):
        return ValueType.DOUBLE
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ValueType.BYTES
    if isinstance(value, datetime):
        return ValueType.UNIX_TIMESTAMP
    if isinstance(value, (list, tuple)):
        first = next((x for x in value if x is not None), "")
        return ValueType(_inferred(first) + 10)
    if isinstance(value, dict):
        return ValueType.MAP
    raise TypeError(f"no Feast value type for {type(value).__name__}")


# entry = 0x0a, len(message), message = 0x12, n, data: below 126 bytes every length is one byte.
_SHORT_STRING_PREFIX = [bytes((0x0A, n + 2, 0x12, n)) for n in range(126)]


def _string_values(column: Sequence[Any]) -> bytes:
    if None not in column:
        encoded = [v.encode() for v in column]
        try:
            return b"".join([_SHORT_STRING_PREFIX[len(data)] + data for data in encoded])
        except IndexError:
            pass  # a long string: the general loop below
    parts = []
    for v in column:
        if v is None:
            parts.append(_EMPTY_VALUE)
            continue
        data = v.encode()
        n = len(data)
        if n < 126:
            parts.append(_SHORT_STRING_PREFIX[n] + data)
        else:
            message = _len_field(b"\x12", data)
            parts.append(b"\x0a" + varint(len(message)) + message)
    return b"".join(parts)


_ROW_STRUCTS: dict[tuple[str, int], struct.Struct] = {}
# One view's columns, all packed at once: (code, header length, rows, columns, prefix length, tail length).
_VIEW_STRUCTS: dict[tuple[str, int, int, int, int, int], struct.Struct] = {}


def _fixed_column(column: Sequence[Any], header: bytes, element: str) -> bytes:
    """A float/double/bool column without nulls: (entry header, value) per row, packed in one call."""
    n = len(column)
    key = (element, n)
    packer = _ROW_STRUCTS.get(key)
    if packer is None:
        code = {"<f8": "d", "<f4": "f", "u1": "?"}[element]
        packer = struct.Struct("<" + f"{len(header)}s{code}" * n)
        if len(_ROW_STRUCTS) >= 256:
            _ROW_STRUCTS.clear()
        _ROW_STRUCTS[key] = packer
    args: list[Any] = [header] * (2 * n)
    args[1::2] = column
    return packer.pack(*args)


def encode_values(column: Sequence[Any], dtype: DType | None) -> bytes:
    """Every ``FeatureVector.values`` entry of one column (``None`` becomes an empty Value)."""
    value_type = dtype.value_type if dtype is not None else None
    if value_type == ValueType.STRING:
        return _string_values(column)
    fixed = _FIXED.get(value_type) if value_type is not None else None
    if fixed is not None and column and None not in column:
        if len(column) <= _STRUCT_MAX_ROWS:
            return _fixed_column(column, *fixed)
        header, element = fixed
        rows = np.empty(len(column), dtype=[("h", "S3"), ("v", element)])
        rows["h"] = header
        rows["v"] = column
        return rows.tobytes()
    encode = _ENCODERS.get(value_type) if value_type is not None else None
    parts = []
    for v in column:
        if v is None:
            parts.append(_EMPTY_VALUE)
            continue
        message = (encode or _ENCODERS[_inferred(v)])(v)
        parts.append(b"\x0a" + varint(len(message)) + message)
    return b"".join(parts)


def _timestamp_entry(micros: int) -> bytes:
    entry = _TIMESTAMP_CACHE.get(micros)
    if entry is None:
        seconds, rest = divmod(micros, 1_000_000)
        message = (b"\x08" + varint(seconds) if seconds else b"") + (b"\x10" + varint(rest * 1000) if rest else b"")
        entry = b"\x1a" + varint(len(message)) + message
        if len(_TIMESTAMP_CACHE) >= _TIMESTAMP_CACHE_MAX:
            _TIMESTAMP_CACHE.clear()
        _TIMESTAMP_CACHE[micros] = entry
    return entry


def _timestamps(micros: Sequence[int]) -> bytes:
    if not any(micros):
        return b"\x1a\x00" * len(micros)
    return b"".join(map(_timestamp_entry, micros))


def _statuses(statuses: Sequence[int]) -> bytes:
    # Every FieldStatus is below 128, so each packed varint is one byte.
    return _len_field(b"\x12", bytes(statuses)) if statuses else b""


def online_response_bytes(response: OnlineResponse, dtypes: Mapping[str, DType]) -> bytes:
    """The serialized ``feast.serving.GetOnlineFeaturesResponse`` for ``response``.

    ``dtypes`` gives each output column's dtype (join keys included); a column missing from it
    gets Feast's inference from its Python values.
    """
    key = tuple(response.feature_names)
    metadata = _NAMES_CACHE.get(key)
    if metadata is None:
        metadata = _metadata(key)
        if len(_NAMES_CACHE) >= 1024:
            _NAMES_CACHE.clear()
        _NAMES_CACHE[key] = metadata
    return metadata + _vectors(response, 0, len(key), [dtypes.get(n) for n in key])


def plan_response_bytes(response: OnlineResponse, plan: OnlinePlan) -> bytes:
    """:func:`online_response_bytes` for a response read with ``plan``: dtypes and names from the plan.

    The metadata and each view's value layout are worked out once per plan; a view whose features
    are all of one fixed-size type (float, double, bool) and have no nulls is written with one
    ``struct`` call.
    """
    if tuple(response.feature_names) != plan.feature_names:
        return online_response_bytes(response, plan.dtype_map())
    layout = plan.encodings.get("proto")
    if layout is None:
        layout = plan.encodings["proto"] = (_metadata(plan.feature_names), [_fixed_kind(plan, r) for r in plan.reads])
    metadata, kinds = layout
    dtypes = plan.dtypes
    out = [metadata, _vectors(response, 0, len(plan.key_columns), dtypes)]
    for read, kind in zip(plan.reads, kinds, strict=True):
        packed = _view_struct(response, read.start, read.stop, kind) if kind is not None else None
        out.append(packed if packed is not None else _vectors(response, read.start, read.stop, dtypes))
    return b"".join(out)


_STRUCT_CODES = {"<f8": ("d", 8), "<f4": ("f", 4), "u1": ("?", 1)}


def _fixed_kind(plan: OnlinePlan, read: ViewRead) -> tuple[bytes, str, int] | None:
    """(entry header, struct code, value size) when every feature of ``read`` has one fixed-size type."""
    kinds = {d.value_type if d is not None else None for d in plan.dtypes[read.start : read.stop]}
    fixed = _FIXED.get(kinds.pop()) if len(kinds) == 1 else None  # type: ignore[arg-type]
    if fixed is None:
        return None
    header, element = fixed
    return (header, *_STRUCT_CODES[element])


def _metadata(names: Sequence[str]) -> bytes:
    encoded = b"".join(_len_field(b"\x0a", n.encode()) for n in names)
    return _len_field(b"\x0a", _len_field(b"\x0a", encoded))


def _vectors(response: OnlineResponse, start: int, stop: int, dtypes: Sequence[DType | None]) -> bytes:
    """``FeatureVector`` entries of columns ``start`` to ``stop``, one column at a time."""
    out = []
    # Columns of one view share their status and timestamp lists, and come one after another.
    last_statuses: object = None
    last_stamps: object = None
    status_part = stamp_part = b""
    for i in range(start, stop):
        statuses, stamps = response.statuses[i], response.event_timestamps[i]
        if statuses is not last_statuses:
            last_statuses, status_part = statuses, _statuses(statuses)
        if stamps is not last_stamps:
            last_stamps, stamp_part = stamps, _timestamps(stamps)
        vector = encode_values(response.values[i], dtypes[i]) + status_part + stamp_part
        n = len(vector)
        out.append((b"\x12" + _SMALL[n] if n < 128 else b"\x12" + varint(n)) + vector)
    return b"".join(out)


def _view_struct(response: OnlineResponse, start: int, stop: int, kind: tuple[bytes, str, int]) -> bytes | None:
    """One view's ``FeatureVector`` entries in one ``struct`` call, or ``None`` if the columns do not
    share their status and timestamp lists or hold a null."""
    statuses, stamps, values = response.statuses, response.event_timestamps, response.values[start:stop]
    width = stop - start
    status, stamp = statuses[start], stamps[start]
    if statuses[start:stop].count(status) != width or stamps[start:stop].count(stamp) != width:
        return None
    rows = len(status)
    if not rows or rows > _STRUCT_MAX_ROWS:
        return None
    if rows == 1:
        flat = [c[0] for c in values]
        if None in flat:
            return None
    elif any(None in c for c in values):
        return None
    header, code, size = kind
    tail = _statuses(status) + _timestamps(stamp)
    prefix = b"\x12" + varint(rows * (len(header) + size) + len(tail))
    key = (code, len(header), rows, width, len(prefix), len(tail))
    packer = _VIEW_STRUCTS.get(key)
    if packer is None:
        column = f"{len(prefix)}s" + f"{len(header)}s{code}" * rows + f"{len(tail)}s"
        packer = struct.Struct("<" + column * width)
        if len(_VIEW_STRUCTS) >= 256:
            _VIEW_STRUCTS.clear()
        _VIEW_STRUCTS[key] = packer
    if rows == 1:
        args: list[Any] = [prefix, header, None, tail] * width
        args[2::4] = flat
        return packer.pack(*args)
    step = 2 * rows + 2
    args = [header] * (step * width)
    args[::step] = [prefix] * width
    args[step - 1 :: step] = [tail] * width
    for j, column_values in enumerate(values):
        args[j * step + 2 : (j + 1) * step - 1 : 2] = column_values
    return packer.pack(*args)
