"""Entity keys: join-key typing and checks shared by every store, and the two byte forms of a key.

Every store checks join-key columns the same way (:func:`key_array`, :func:`arrow_key_type`,
:func:`value_type_of`, :func:`key_types_for`). Two byte forms exist, both kept by deployed data:

* **Feast's entity key serialization v3** (:class:`KeyEncoder`), SQLite's primary key::

      u32 num_keys
      num_keys x (u32 2 (STRING), u32 len, utf8 join-key name)      # sorted by join-key name
      num_keys x (u32 value_type, u32 len, value bytes)              # same order

  All integers are little-endian. Value bytes: utf8 for STRING, raw for BYTES, 4-byte int32 for
  INT32, 8-byte int64 for INT64. The value type is part of the key, so ``1`` and ``"1"`` never
  match, and the bytes are the same in every process (no hashing, no pickling).

* **The readable text form** (:func:`text_entity_keys`), inside Redis's keys: UTF-8 text, a
  decimal integer or raw bytes; with several join keys, sorted by name, each is written
  ``<byte length>:<bytes>`` (``2:423:ICE`` is station 42, venue ICE).

>>> enc = KeyEncoder({"commodity_code": ValueType.STRING})
>>> enc.encode_one(("CMD00001",))[-8:]
b'CMD00001'
>>> len(enc.encode({"commodity_code": ["A", "B"]}))
2

Python lists (online reads) take a pure-Python path (a few hundred nanoseconds per key, no fixed
cost); Arrow columns (writes) are built column-wise with ``binary_join_element_wise``, never row by row.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import FeatureView
from ladle.errors import EntityKeyError
from ladle.online.arrays import contiguous
from ladle.types import JOIN_KEY_TYPES, ValueType

_U32 = struct.Struct("<I")
_PREFIX = struct.Struct("<II")
_INT32 = struct.Struct("<IIi")
_INT64 = struct.Struct("<IIq")
_ARROW_KEY_TYPES = {
    ValueType.STRING: pa.string(),
    ValueType.BYTES: pa.binary(),
    ValueType.INT32: pa.int32(),
    ValueType.INT64: pa.int64(),
}
_NP_INT: dict[ValueType, np.dtype[Any]] = {ValueType.INT32: np.dtype("<i4"), ValueType.INT64: np.dtype("<i8")}
_EMPTY = pa.scalar(b"", pa.binary())
_CACHE_MAX = 1 << 17


def key_header(names: Sequence[str]) -> bytes:
    """The constant part of every key for these join-key names (already sorted)."""
    parts = [_U32.pack(len(names))]
    for name in names:
        raw = name.encode()
        parts.append(_PREFIX.pack(ValueType.STRING, len(raw)) + raw)
    return b"".join(parts)


def value_type_of(value: object) -> ValueType:
    """The key value type Feast infers for a Python value (int → INT64, str → STRING, bytes → BYTES)."""
    if isinstance(value, bool):
        raise EntityKeyError(f"join key value {value!r} is a bool; join keys are str, int or bytes")
    if isinstance(value, int | np.integer):
        return ValueType.INT64
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, bytes | bytearray | memoryview):
        return ValueType.BYTES
    raise EntityKeyError(f"join key value {value!r} has type {type(value).__name__}; join keys are str, int or bytes")


class KeyEncoder:
    """Encodes entity rows of one set of join keys (name → :class:`ValueType`) into bytes.

    Values given to :meth:`encode_one` must already be of the key's Python type (``str``,
    ``int`` or ``bytes``); :meth:`encode` also accepts Arrow arrays and casts them.
    """

    __slots__ = ("_cache", "_header", "_packers", "_single", "names", "types")

    def __init__(self, key_types: Mapping[str, ValueType]) -> None:
        if not key_types:
            raise EntityKeyError("an entity key needs at least one join key")
        for name, vt in key_types.items():
            if vt not in JOIN_KEY_TYPES:
                raise EntityKeyError(f"join key '{name}' has type {ValueType(vt).name}, which cannot be a key")
        #: Join-key names in key order (sorted, as Feast serializes them).
        self.names: tuple[str, ...] = tuple(sorted(key_types))
        self.types: tuple[ValueType, ...] = tuple(ValueType(key_types[n]) for n in self.names)
        self._header = key_header(self.names)
        self._packers = tuple(_packer(vt) for vt in self.types)
        self._single = self._packers[0] if len(self.names) == 1 else None
        # Serving reads the same entities again and again: remember their keys. Only for one str or
        # bytes key, whose values compare equal exactly when their bytes do (unlike 1 == 1.0 == True).
        cacheable = self._single is not None and self.types[0] in (ValueType.STRING, ValueType.BYTES)
        self._cache: dict[Any, bytes] | None = {} if cacheable else None

    def encode_one(self, values: Sequence[Any]) -> bytes:
        """The key of one row; ``values`` are in :attr:`names` order."""
        if self._single is not None:
            key: bytes = self._header + self._single(values[0])
            return key
        return self._header + b"".join(p(v) for p, v in zip(self._packers, values, strict=True))

    def encode(self, columns: Mapping[str, Sequence[Any] | pa.Array | pa.ChunkedArray]) -> list[bytes]:
        """One key per row from join-key columns (lists or Arrow arrays, any order of names)."""
        if self._single is not None:  # the usual read: one join key, a list of values
            col = columns.get(self.names[0])
            if type(col) is list:
                if self._cache is not None:
                    try:
                        cache = self._cache
                        return [cache[v] for v in col]
                    except (KeyError, TypeError):
                        return self._encode_and_cache(col)
                return self._encode_small([col], len(col))
        cols, n = self._columns(columns)
        if all(isinstance(c, list | tuple) for c in cols):
            return self._encode_small(cols, n)
        return self._encode_arrow(cols, n)

    def _encode_and_cache(self, col: list[Any]) -> list[bytes]:
        keys = self._encode_small([col], len(col))
        cache = self._cache
        if cache is not None:
            if len(cache) + len(col) > _CACHE_MAX:
                cache.clear()
            cache.update(zip(col, keys, strict=True))
        return keys

    def _encode_small(self, cols: list[Any], n: int) -> list[bytes]:
        try:
            if self._single is not None:
                head, pack = self._header, self._single
                return [head + pack(v) for v in cols[0]]
            return [self.encode_one([c[i] for c in cols]) for i in range(n)]
        except (struct.error, AttributeError, TypeError) as exc:
            raise EntityKeyError(f"join key values do not match the key types {self._describe()}: {exc}") from None

    def encode_array(self, columns: Mapping[str, Sequence[Any] | pa.Array | pa.ChunkedArray]) -> pa.Array:
        """The keys as an Arrow binary array (for writes: sortable, no Python objects)."""
        return self._join_arrow(*self._columns(columns))

    def _columns(self, columns: Mapping[str, Sequence[Any] | pa.Array | pa.ChunkedArray]) -> tuple[list[Any], int]:
        """The join-key columns in key order and their common length."""
        try:
            cols = [columns[name] for name in self.names]
        except KeyError as exc:
            raise EntityKeyError(f"join key column {exc.args[0]!r} is missing") from None
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise EntityKeyError(f"join key columns {list(self.names)} have different lengths")
        return cols, n

    def _encode_arrow(self, cols: list[Any], n: int) -> list[bytes]:
        keys: list[bytes] = self._join_arrow(cols, n).to_pylist()
        return keys

    def _join_arrow(self, cols: list[Any], n: int) -> pa.Array:
        parts: list[Any] = [pa.scalar(self._header, pa.binary())]
        for name, vt, col in zip(self.names, self.types, cols, strict=True):
            arr = _as_arrow(name, vt, col)
            parts.extend(_arrow_parts(vt, arr, n))
        if len(parts) == 1:
            parts.append(_EMPTY)
        return pc.binary_join_element_wise(*parts, _EMPTY)

    def _describe(self) -> str:
        return ", ".join(f"{n}: {t.name}" for n, t in zip(self.names, self.types, strict=True))


def _packer(vt: ValueType) -> Any:
    if vt == ValueType.STRING:
        pack = _PREFIX.pack

        def string(v: str) -> bytes:
            raw = v.encode()
            return pack(2, len(raw)) + raw

        return string
    if vt == ValueType.BYTES:
        pack = _PREFIX.pack

        def raw_bytes(v: bytes) -> bytes:
            return pack(1, len(v)) + bytes(v)

        return raw_bytes
    fixed = _INT32 if vt == ValueType.INT32 else _INT64
    width = fixed.size - 8

    def integer(v: int) -> bytes:
        return fixed.pack(vt, width, v)

    return integer


def arrow_key_type(name: str, arrow_type: pa.DataType) -> ValueType:
    """The key value type an Arrow column holds: any integer → INT64, text → STRING, binary → BYTES."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return ValueType.INT64
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return ValueType.STRING
    if (
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_fixed_size_binary(arrow_type)
    ):
        return ValueType.BYTES
    raise EntityKeyError(f"join key column '{name}' has type {arrow_type}; join keys are strings, integers or bytes")


def key_array(name: str, column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A join-key column as one plain array, checked: every row needs a key (every store's rule)."""
    array = contiguous(column)
    if array.null_count:
        raise EntityKeyError(f"join key '{name}' has {array.null_count} null value(s); every row needs a key")
    return array


def _as_arrow(name: str, vt: ValueType, col: Any) -> pa.Array:
    target = _ARROW_KEY_TYPES[vt]
    try:
        arr = key_array(name, col if isinstance(col, pa.Array | pa.ChunkedArray) else pa.array(col, type=target))
        if not arr.type.equals(target):
            family = ValueType.INT64 if vt == ValueType.INT32 else vt
            if arrow_key_type(name, arr.type) != family:
                raise EntityKeyError(f"join key '{name}' is {vt.name} but the column is {arr.type}")
            arr = arr.cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise EntityKeyError(f"join key '{name}' ({vt.name}): {exc}") from None
    return arr


def _arrow_parts(vt: ValueType, arr: pa.Array, n: int) -> list[Any]:
    """Binary arrays / scalars that concatenate to this key's ``(type, len, value)`` per row."""
    if vt in _NP_INT:
        np_type = _NP_INT[vt]
        rows = np.empty(n, dtype=[("vt", "<u4"), ("len", "<u4"), ("v", np_type)])
        rows["vt"] = vt
        rows["len"] = np_type.itemsize
        rows["v"] = arr.to_numpy(zero_copy_only=False)
        fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(rows.itemsize), n, [None, pa.py_buffer(rows)])
        return [fixed.cast(pa.binary())]
    binary = arr.cast(pa.binary())
    lengths = pc.binary_length(binary).to_numpy(zero_copy_only=False)
    prefix = np.empty(n, dtype=[("vt", "<u4"), ("len", "<u4")])
    prefix["vt"] = vt
    prefix["len"] = lengths
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), n, [None, pa.py_buffer(prefix)])
    return [fixed.cast(pa.binary()), binary]


#: Feast's join key of views without entities: every row of such a view has the key ``""``.
DUMMY_JOIN_KEY = "__dummy_id"


def key_types_for(view: FeatureView) -> dict[str, ValueType | None]:
    """Each join key's declared value type (``None`` when neither entity nor schema says).

    A view without entities has the one key :data:`DUMMY_JOIN_KEY` (STRING), always ``""``.
    """
    if not view.entities:
        return {DUMMY_JOIN_KEY: ValueType.STRING}
    declared = {f.name: f.dtype.value_type for f in view.entity_columns}
    out: dict[str, ValueType | None] = {}
    for entity in view.entities:
        out[entity.join_key] = declared.get(entity.join_key, entity.value_type)
    return out


# -- the readable text form ---------------------------------------------------------------------


def _value_bytes(join_key: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool) or value is None:
        raise EntityKeyError(f"join key '{join_key}': {value!r} is not a valid key value (str, int or bytes)")
    try:
        return str(operator.index(value)).encode()
    except TypeError:
        raise EntityKeyError(
            f"join key '{join_key}': {type(value).__name__} {value!r} is not a valid key value (str, int or bytes)"
        ) from None


def text_entity_keys(join_keys: Sequence[str], keys: Mapping[str, Sequence[Any]]) -> list[bytes]:
    """Readable entity keys for N entities given as Python values per join key (reads)."""
    names = sorted(join_keys)
    missing = [n for n in names if n not in keys]
    if missing:
        raise EntityKeyError(f"missing join key(s) {missing}; the view needs {names}")
    if len(names) == 1:
        name = names[0]
        try:  # the common case, string keys, without a call per value
            return [v.encode() for v in keys[name]]
        except AttributeError:
            return [_value_bytes(name, v) for v in keys[name]]
    columns = [keys[n] for n in names]
    if len({len(c) for c in columns}) > 1:
        raise EntityKeyError(f"join key columns {names} have different lengths")
    out = []
    for values in zip(*columns, strict=True):
        parts = [_value_bytes(n, v) for n, v in zip(names, values, strict=True)]
        out.append(b"".join(b"%d:%b" % (len(p), p) for p in parts))
    return out


def _component(name: str, column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One join key's part of the entity: an integer in decimal, text as UTF-8, bytes as they are."""
    array = key_array(name, column)
    if arrow_key_type(name, array.type) == ValueType.INT64:
        array = pc.cast(array, pa.string())
    return pc.cast(array, pa.binary())


def text_entity_keys_arrow(join_keys: Sequence[str], table: pa.Table) -> pa.Array:
    """Readable entity keys for every row of ``table`` (a binary array), vectorized (writes)."""
    names = sorted(join_keys)
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise EntityKeyError(f"rows have no join key column(s) {missing}; the view needs {names}")
    parts = [_component(n, table.column(n)) for n in names]
    if len(parts) == 1:
        return parts[0]
    pieces: list[Any] = []
    for part in parts:
        pieces += [pc.cast(pc.cast(pc.binary_length(part), pa.string()), pa.binary()), b":", part]
    return pc.binary_join_element_wise(*pieces, b"")
