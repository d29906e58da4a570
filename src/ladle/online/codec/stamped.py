"""The stamped row format: one compact blob per (entity, view) that starts with its timestamps.

For stores that decide newest-event-wins next to the data (Redis's upsert script; any key-value
store): the first 16 bytes are all a comparison needs, with no decoding. Blob layout (little-endian)::

    i64 event_ts_us | i64 created_ts_us | u32 layout fingerprint | null bitmap (1 bit per feature)
    | fixed-width features in schema order | u32 byte length per variable-width feature
    | variable-width payloads in schema order

Fixed-width: Float64 f8, Float32 f4, Int64 i8, Int32 i4, Bool u1, UnixTimestamp i8 (µs). Variable:
String (UTF-8), Bytes, Map / Json / Struct (their compact JSON text, UTF-8; :mod:`ladle.documents`),
lists (``Array(fixed)``: the raw elements; ``Array(String|Bytes)``:
u32 count, u32 length per element, then the elements). Null values are zero-filled with their bit set.

Everything up to the last length is a numpy structured record (:attr:`ViewLayout.record`): a view
of fixed-width features decodes with one ``np.frombuffer`` over the joined blobs; variable parts are
gathered with index arithmetic into Arrow arrays (:mod:`.stamped_decode`). No per-value Python
objects are built until the final ``tolist``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ladle.documents import to_json_column
from ladle.online.arrays import (
    FIXED,
    I64,
    as_numpy,
    binary_scalar,
    cast_column,
    fixed_numpy,
    mark_nulls,
    null_mask,
    records_array,
    sized_array,
)
from ladle.online.codec.history import fields_from_json, fields_json, fingerprint
from ladle.online.columns import timestamps_us
from ladle.types import DType, ValueType

_NO_SEP = binary_scalar(b"")  # pa.scalar would import pandas
#: Where the layout fingerprint sits in a blob (after the two timestamps).
FINGERPRINT_AT = 16


@dataclass(frozen=True)
class Slot:
    """Where one feature lives in the blob."""

    index: int
    dtype: DType
    kind: str  # "fixed" | "var" | "list_fixed" | "list_var"
    field: str  # record field (the value for fixed, the byte length otherwise)
    var_rank: int = -1  # order among variable-width features


def _kind(dtype: DType) -> str:
    if dtype.element is not None:
        return "list_fixed" if dtype.element.value_type in FIXED else "list_var"
    return "fixed" if dtype.value_type in FIXED else "var"


class ViewLayout:
    """The blob layout of one view schema; identified by a 32-bit fingerprint."""

    def __init__(self, fields: Sequence[tuple[str, DType]]) -> None:
        self.fields = tuple(fields)
        self.fingerprint = fingerprint(self.to_json().encode())
        self.null_bytes = (len(self.fields) + 7) // 8
        parts: list[tuple[Any, ...]] = [("ets", "<i8"), ("cts", "<i8"), ("fp", "<u4")]
        if self.null_bytes:
            parts.append(("nulls", "u1", (self.null_bytes,)))
        self.slots: dict[str, Slot] = {}
        for i, (name, dtype) in enumerate(self.fields):
            if _kind(dtype) == "fixed":
                self.slots[name] = Slot(i, dtype, "fixed", f"f{i}")
                parts.append((f"f{i}", FIXED[dtype.value_type][1]))
        self.variable = tuple(n for n, d in self.fields if _kind(d) != "fixed")
        for rank, name in enumerate(self.variable):
            i, dtype = next((j, d) for j, (n, d) in enumerate(self.fields) if n == name)
            self.slots[name] = Slot(i, dtype, _kind(dtype), f"l{rank}", rank)
            parts.append((f"l{rank}", "<u4"))
        self.record = np.dtype(parts)
        self.size = self.record.itemsize
        #: Runs of adjacent fixed-width numeric features of one dtype: (numpy dtype, record offset,
        #: names). A run decodes for all rows with one strided 2-D view and one ``tolist``.
        self.runs = self._runs()
        #: For fixed-width layouts: one row as a ``struct`` (faster than numpy for a handful of rows);
        #: feature ``name`` is item ``struct_index[name]`` of the unpacked tuple.
        self.row_struct: struct.Struct | None = None
        self.struct_index: dict[str, int] = {}
        if not self.variable:
            codes = "".join(FIXED[d.value_type][0] for _, d in self.fields)
            self.row_struct = struct.Struct(f"<qqI{self.null_bytes}s{codes}")
            self.struct_index = {name: 4 + k for k, (name, _) in enumerate(self.fields)}

    def _runs(self) -> list[tuple[np.dtype[Any], int, tuple[str, ...]]]:
        runs: list[tuple[np.dtype[Any], int, tuple[str, ...]]] = []
        record_fields = self.record.fields
        assert record_fields is not None
        for name, dtype in self.fields:
            slot = self.slots[name]
            if slot.kind != "fixed" or dtype.value_type in (ValueType.BOOL, ValueType.UNIX_TIMESTAMP):
                continue
            np_dtype, offset = FIXED[dtype.value_type][1], record_fields[slot.field][1]
            last = runs[-1] if runs else None
            if last is not None and last[0] == np_dtype and last[1] + np_dtype.itemsize * len(last[2]) == offset:
                runs[-1] = (np_dtype, last[1], (*last[2], name))
            else:
                runs.append((np_dtype, offset, (name,)))
        return runs

    @classmethod
    def of(cls, features: Sequence[Any]) -> ViewLayout:
        """The layout of a view's feature fields (objects with ``name`` and ``dtype``)."""
        return cls([(f.name, f.dtype) for f in features])

    def to_json(self) -> str:
        """The layout as stored in the project's ``_meta`` hash."""
        return json.dumps(fields_json(self.fields))

    @classmethod
    def from_json(cls, text: str | bytes) -> ViewLayout:
        """Rebuild a layout stored with :meth:`to_json`."""
        return cls(fields_from_json(text))


_LAYOUTS: dict[tuple[tuple[str, str], ...], ViewLayout] = {}


def layout_for(features: Sequence[Any]) -> ViewLayout:
    """The layout of a view's current features (``name``, ``dtype``), built once per schema."""
    key = tuple((f.name, f.dtype.name) for f in features)
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) > 1024:  # schemas of long-gone registry versions
            _LAYOUTS.clear()
        layout = _LAYOUTS[key] = ViewLayout.of(features)
    return layout


# -- encoding --------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Rows checked and cast to the layout, ready to encode in slices."""

    layout: ViewLayout
    event_ts: I64
    created_ts: I64
    columns: dict[str, pa.Array]  # missing features are absent (all null)


def prepare(layout: ViewLayout, view_name: str, table: pa.Table, now_us: int) -> Prepared:
    """Check and cast ``table`` for ``layout``; raises before anything is written.

    A missing (or null) created timestamp means ``now_us``, the write time.
    """
    ets = as_numpy(timestamps_us(table, view_name, now_us, created=False))
    cts = as_numpy(timestamps_us(table, view_name, now_us, created=True))
    columns = {}
    for name, dtype in layout.fields:
        if name in table.column_names:
            if dtype.is_document:  # Map / Json / Struct: JSON text, like a String (ladle.documents)
                columns[name] = to_json_column(name, table.column(name), dtype)
            else:
                columns[name] = cast_column(name, table.column(name), dtype.arrow)
    return Prepared(layout, ets, cts, columns)


def _list_payload(slot: Slot, array: pa.Array) -> pa.Array:
    if array.null_count:
        array = pc.if_else(array.is_null(), pa.scalar([], array.type), array)
    counts = as_numpy(pc.list_value_length(array)).astype(np.int64)
    elements = array.flatten()
    element = slot.dtype.element
    assert element is not None
    if slot.kind == "list_fixed":
        if elements.null_count and pa.types.is_floating(elements.type):
            elements = pc.fill_null(elements, float("nan"))
        width = FIXED[element.value_type][1].itemsize
        return sized_array(fixed_numpy(elements, element.value_type), counts * width)
    data = pc.fill_null(pc.cast(elements, pa.large_binary()), b"")
    lengths = as_numpy(pc.binary_length(data)).astype("<u4")
    head = np.empty(len(counts), dtype="<u4")
    head[:] = counts
    row_data = _rows_of(data, counts)
    return pc.binary_join_element_wise(records_array(head), sized_array(lengths, counts * 4), row_data, _NO_SEP)


def _rows_of(elements: pa.Array, counts: I64) -> pa.Array:
    """Concatenate each row's run of ``counts[i]`` binary elements (zero-copy regrouping)."""
    _, offsets_buf, data_buf = elements.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[elements.offset : elements.offset + len(elements) + 1]
    bounds = offsets[np.concatenate(([0], np.cumsum(counts)))]
    buffers = [None, pa.py_buffer(bounds - bounds[0]), data_buf.slice(int(bounds[0]))]
    return pa.Array.from_buffers(pa.large_binary(), len(counts), buffers)


def fill(prepared: Prepared, rec: npt.NDArray[Any], start: int, stop: int) -> list[pa.Array]:
    """Write rows ``start:stop`` into the zeroed record array ``rec``; return the variable payloads."""
    layout = prepared.layout
    n = stop - start
    rec["ets"] = prepared.event_ts[start:stop]
    rec["cts"] = prepared.created_ts[start:stop]
    rec["fp"] = layout.fingerprint
    payloads: list[pa.Array] = []
    for name, _ in layout.fields:
        slot = layout.slots[name]
        column = prepared.columns.get(name)
        array = column.slice(start, n) if column is not None else pa.nulls(n, slot.dtype.arrow)
        mask: npt.NDArray[np.bool_] | None
        if slot.kind == "fixed":
            values = fixed_numpy(array, slot.dtype.value_type)
            rec[slot.field] = values
            mask = null_mask(array, values)
        else:
            if slot.kind == "var":
                payload = pc.fill_null(pc.cast(array, pa.large_binary()), b"")
            else:
                payload = _list_payload(slot, array)
            rec[slot.field] = as_numpy(pc.binary_length(payload))
            payloads.append(payload)
            mask = as_numpy(array.is_null()) if array.null_count else None
        mark_nulls(rec["nulls"], slot.index, mask)
    return payloads


def encode(prepared: Prepared, start: int, stop: int) -> pa.Array:
    """Blobs (a large_binary array) for rows ``start:stop``."""
    layout = prepared.layout
    n = stop - start
    rec = np.zeros(n, dtype=layout.record)
    payloads = fill(prepared, rec, start, stop)
    fixed = records_array(rec)
    if not payloads:
        return fixed
    return pc.binary_join_element_wise(fixed, *payloads, _NO_SEP)
