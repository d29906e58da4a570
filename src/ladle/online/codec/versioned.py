"""The versioned row format: all features of one entity as one blob, for stores that keep the
timestamps beside it (SQLite's ``__event_ts`` / ``__created_ts`` columns). Vectorized both ways.

Layout (little-endian; documented in docs/online.md)::

    u8 version (1) | u32 schema fingerprint | null bitmap, ceil(F/8) bytes (bit i = feature i is null)
    fixed section: each fixed-width feature in schema order (Int32 4, Int64 8, Float32 4, Float64 8,
                   Bool 1, UnixTimestamp 8 = µs since the epoch); zeros when null
    var section:   each String / Bytes / Array feature in schema order: u32 length + payload
                   (utf8, raw bytes, or the list encoding of :mod:`ladle.online.codec.lists`)

The fingerprint names the schema a blob was written with, so a reader can decode blobs written
before a feature was added or retyped (the store keeps every fingerprint's schema). Float NaN is
stored as null. Everything before the var section is one NumPy record: many blobs decode with one
``np.frombuffer``; a single blob with one ``struct.unpack_from``.

>>> codec = RowCodec([("price", Float64), ("venue", String)])
>>> codec.decode_one(codec.encode(pa.table({"price": [1.5], "venue": ["ICE"]}))[0])
[1.5, 'ICE']
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.errors import SchemaMismatchError
from ladle.online.arrays import (
    FIXED,
    cast_column,
    fixed_numpy,
    fixed_values,
    mark_nulls,
    micros_to_datetime,
    null_mask,
    records_array,
)
from ladle.online.codec.history import fingerprint
from ladle.online.codec.lists import decode_list, encode_list_column
from ladle.types import DType, ValueType

_U32 = struct.Struct("<I")
#: Where the schema fingerprint sits in a blob (after the version byte).
FINGERPRINT_AT = 1
_EMPTY = pa.scalar(b"", pa.binary())
Schema = Sequence[tuple[str, DType]]


class RowCodec:
    """Encoder/decoder of one view schema (``[(feature name, dtype), ...]`` in schema order)."""

    VERSION = 1

    def __init__(self, schema: Schema) -> None:
        self.schema: tuple[tuple[str, DType], ...] = tuple(schema)
        self.names = [name for name, _ in self.schema]
        spec = ";".join(f"{name}:{dtype.name}" for name, dtype in self.schema).encode()
        #: Identifies the schema; stored in every blob.
        self.fingerprint = fingerprint(spec)
        self._count = len(self.schema)
        fixed = [(i, n, d) for i, (n, d) in enumerate(self.schema) if d.value_type in FIXED]
        self._fixed = fixed
        self._var = [(i, n, d) for i, (n, d) in enumerate(self.schema) if d.value_type not in FIXED]
        bitmap = (self._count + 7) // 8
        fields: list[Any] = [("version", "u1"), ("fp", "<u4"), ("nulls", "u1", (bitmap,))]
        fields += [(f"f{i}", FIXED[d.value_type][1]) for i, _, d in fixed]
        self._record = np.dtype(fields)
        self._struct = struct.Struct("<BI" + f"{bitmap}s" + "".join(FIXED[d.value_type][0] for _, _, d in fixed))
        #: Where each feature's raw value sits in a decoded row: ("f", k) fixed slot k, ("v", k) var slot k.
        self._slot = {i: k for k, (i, _, _) in enumerate(fixed)} | {i: k for k, (i, _, _) in enumerate(self._var)}
        self._post = [_post_decoder(d) for _, d in self.schema]

    @property
    def prefix_size(self) -> int:
        """Bytes before the var section."""
        return self._struct.size

    # -- encode ---------------------------------------------------------------------------------
    def encode(self, table: pa.Table) -> list[bytes]:
        """One blob per row of ``table``; schema features missing from the table are null."""
        blobs: list[bytes] = self.encode_array(table).to_pylist()
        return blobs

    def encode_array(self, table: pa.Table) -> pa.Array:
        """The blobs as an Arrow binary array (no Python object per row)."""
        n = table.num_rows
        head = np.zeros(n, dtype=self._record)
        head["version"] = self.VERSION
        head["fp"] = self.fingerprint
        nulls = head["nulls"]
        for i, name, dtype in self._fixed:
            if name not in table.column_names:
                mark_nulls(nulls, i, np.ones(n, dtype=bool))
                continue
            col = cast_column(name, table.column(name), dtype.arrow)
            values = fixed_numpy(col, dtype.value_type)
            head[f"f{i}"] = values
            mark_nulls(nulls, i, null_mask(col, values))
        parts: list[Any] = []
        for i, name, dtype in self._var:
            payload = self._payload(table, name, dtype, n)
            if payload.null_count:
                mark_nulls(nulls, i, payload.is_null().to_numpy(zero_copy_only=False))
                payload = payload.fill_null(b"")
            lengths = pc.binary_length(payload).to_numpy(zero_copy_only=False).astype("<u4")
            parts += [records_array(lengths, pa.binary()), payload]
        first = records_array(head, pa.binary())
        if not parts:
            return first
        return pc.binary_join_element_wise(first, *parts, _EMPTY)

    @staticmethod
    def _payload(table: pa.Table, name: str, dtype: DType, n: int) -> pa.Array:
        if name not in table.column_names:
            return pa.nulls(n, pa.binary())
        col = table.column(name)
        if dtype.element is not None:
            try:
                return encode_list_column(col, dtype.element)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise SchemaMismatchError(f"feature '{name}' cannot be stored as {dtype}: {exc}") from None
        return cast_column(name, col, dtype.arrow).cast(pa.binary())

    # -- decode ---------------------------------------------------------------------------------
    def decode_one(self, blob: bytes) -> list[Any] | None:
        """Every feature of one blob in schema order, or ``None`` if it has another schema."""
        if len(blob) < self._struct.size:
            return None
        head = self._struct.unpack_from(blob, 0)
        if head[0] != self.VERSION or head[1] != self.fingerprint:
            return None
        bitmap = int.from_bytes(head[2], "little")
        raw_var: list[bytes] = []
        pos = self._struct.size
        for _ in self._var:
            (length,) = _U32.unpack_from(blob, pos)
            raw_var.append(blob[pos + 4 : pos + 4 + length])
            pos += 4 + length
        out: list[Any] = []
        fixed = head[3:]
        for i, (_, dtype) in enumerate(self.schema):
            if bitmap >> i & 1:
                out.append(None)
                continue
            raw = fixed[self._slot[i]] if dtype.value_type in FIXED else raw_var[self._slot[i]]
            post = self._post[i]
            out.append(raw if post is None else post(raw))
        return out

    def picker(self, wanted: Sequence[int]) -> Callable[[bytes], list[Any] | None]:
        """A function returning the ``wanted`` features of one blob (``None`` for another schema).

        For fixed-width features it is one ``struct.unpack_from`` and an ``itemgetter``: the
        single-entity read path.
        """
        wanted = list(wanted)
        if not wanted or any(self.schema[i][1].value_type not in FIXED for i in wanted):

            def pick_any(blob: bytes) -> list[Any] | None:
                row = self.decode_one(blob)
                return None if row is None else [row[i] for i in wanted]

            return pick_any
        unpack, size, fingerprint, version = self._struct.unpack_from, self._struct.size, self.fingerprint, self.VERSION
        slots = [3 + self._slot[i] for i in wanted]
        posts = [self._post[i] for i in wanted]
        get = operator.itemgetter(*slots)
        single = len(slots) == 1
        plain = all(p is None for p in posts)

        def pick(blob: bytes) -> list[Any] | None:
            if len(blob) < size:
                return None
            head = unpack(blob, 0)
            if head[0] != version or head[1] != fingerprint:
                return None
            bits = int.from_bytes(head[2], "little")
            if not bits and plain:
                return [get(head)] if single else list(get(head))
            return [
                None if bits >> i & 1 else (head[s] if p is None else p(head[s]))
                for i, s, p in zip(wanted, slots, posts, strict=True)
            ]

        return pick

    def decode_columns(self, blobs: Sequence[bytes], wanted: Sequence[int]) -> list[list[Any]] | None:
        """Columns ``wanted`` (schema positions) of many blobs; ``None`` if any has another schema."""
        m = len(blobs)
        size = self._struct.size
        joined = b"".join([b[:size] for b in blobs]) if self._var else b"".join(blobs)
        if len(joined) != size * m:
            return None
        rec = np.frombuffer(joined, dtype=self._record)
        if (rec["version"] != self.VERSION).any() or (rec["fp"] != self.fingerprint).any():
            return None
        null_bytes = rec["nulls"]
        if null_bytes.any():
            nulls = np.unpackbits(null_bytes, axis=1, count=self._count, bitorder="little").astype(bool)
            has_null: np.ndarray[Any, Any] = np.asarray(nulls.any(axis=0))
        else:  # the usual case: skip the bit unpacking
            nulls = np.zeros((0, 0), dtype=bool)
            has_null = np.zeros(self._count, dtype=bool)
        var_raw: list[list[bytes]] | None = None
        out = []
        for i in wanted:
            dtype = self.schema[i][1]
            post = self._post[i]
            if dtype.value_type in FIXED:
                col = rec[f"f{i}"]
                values: list[Any] = fixed_values(col, dtype.value_type)
            else:
                if var_raw is None:
                    var_raw = self._split_var(blobs)
                raw = var_raw[self._slot[i]]
                if post is not None and has_null[i]:
                    values = [None if null else post(v) for v, null in zip(raw, nulls[:, i].tolist(), strict=True)]
                else:
                    values = raw if post is None else [post(v) for v in raw]
            if has_null[i]:
                for r in np.flatnonzero(nulls[:, i]).tolist():
                    values[r] = None
            out.append(values)
        return out

    def _split_var(self, blobs: Sequence[bytes]) -> list[list[bytes]]:
        cols: list[list[bytes]] = [[] for _ in self._var]
        start = self._struct.size
        unpack = _U32.unpack_from
        for blob in blobs:
            pos = start
            for col in cols:
                (length,) = unpack(blob, pos)
                col.append(blob[pos + 4 : pos + 4 + length])
                pos += 4 + length
        return cols


def _post_decoder(dtype: DType) -> Callable[[Any], Any] | None:
    """Turns a raw decoded slot (number or bytes) into the dtype's Python value; None = as is."""
    vt = dtype.value_type
    if dtype.element is not None:
        element = dtype.element
        return lambda raw: decode_list(raw, element)
    if vt == ValueType.STRING:
        return lambda raw: raw.decode()
    if vt == ValueType.UNIX_TIMESTAMP:
        return micros_to_datetime
    return None
