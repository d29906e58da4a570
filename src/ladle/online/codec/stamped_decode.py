"""Decoding stamped row blobs into :class:`~ladle.online.base.ViewRows` (format: :mod:`.stamped`).

Blobs of one layout are decoded together: the fixed record of all rows in one numpy view, each
variable-width feature with one gather. Rows written under an older schema of the view (another
layout fingerprint) are decoded with that layout, looked up through ``resolve``, and matched by
feature name and dtype (:mod:`.history`).
"""

from __future__ import annotations

import json
import operator
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ladle.online.arrays import FIXED, I64, TIMESTAMP_US, U8, fixed_values, gather, micros_to_datetime, read_u32
from ladle.online.base import ViewRows
from ladle.online.codec.history import group_by_fingerprint, same_features, scatter
from ladle.online.codec.stamped import FINGERPRINT_AT, Slot, ViewLayout
from ladle.types import ValueType

Resolver = Callable[[int], ViewLayout | None]
_SMALL = 8  # rows up to which struct beats numpy


def _starts(lengths: I64) -> I64:
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


class _Group:
    """Blobs of one layout, with their fixed records and the start of each variable payload."""

    def __init__(self, layout: ViewLayout, blobs: Sequence[bytes], rec: npt.NDArray[Any] | None = None) -> None:
        self.layout = layout
        self.any_null: bool | None = None
        self._runs: dict[str, list[Any]] | None = None
        self.buf: U8 = np.empty(0, dtype=np.uint8)
        self.var_start: I64 = np.empty(0, dtype=np.int64)
        joined = b"".join(blobs)
        n = len(blobs)
        if rec is not None or (not layout.variable and len(joined) == n * layout.size):
            self.rec = rec if rec is not None else np.frombuffer(joined, dtype=layout.record)
            return
        lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=n)
        starts = _starts(lengths)
        self.buf = np.frombuffer(joined, dtype=np.uint8)
        raw = self.buf[starts[:, None] + np.arange(layout.size)]
        self.rec = np.ascontiguousarray(raw).view(layout.record)[:, 0]
        self.var_start = starts + layout.size

    def nulls(self, slot: Slot) -> npt.NDArray[np.bool_] | None:
        if self.any_null is None:
            self.any_null = bool(self.layout.null_bytes) and bool(self.rec["nulls"].any())
        if not self.any_null:
            return None
        bits = (self.rec["nulls"][:, slot.index // 8] >> (slot.index % 8)) & 1
        return bits.astype(bool) if bits.any() else None

    def payload(self, slot: Slot) -> tuple[I64, I64]:
        start = self.var_start.copy()
        for rank in range(slot.var_rank):
            start += self.rec[f"l{rank}"]
        return start, self.rec[slot.field].astype(np.int64)

    def _run_columns(self) -> dict[str, list[Any]]:
        """Every feature of every numeric run, each run with one strided view and one ``tolist``."""
        if self._runs is None:
            flat = self.rec.view(np.uint8)
            self._runs = {}
            for np_dtype, offset, names in self.layout.runs:
                shape, strides = (len(self.rec), len(names)), (self.rec.itemsize, np_dtype.itemsize)
                block = np.ndarray(shape, dtype=np_dtype, buffer=flat, offset=offset, strides=strides)
                self._runs.update(zip(names, block.T.tolist(), strict=True))
        return self._runs

    def values(self, slot: Slot, name: str) -> list[Any]:
        run_columns = self._run_columns() if slot.kind == "fixed" else {}
        if name in run_columns:
            out = run_columns[name]
        elif slot.kind == "fixed":
            out = fixed_values(self.rec[slot.field], slot.dtype.value_type)
        elif slot.kind == "var":
            data, offsets = gather(self.buf, *self.payload(slot))
            out = _binary(slot.dtype.arrow, data, offsets).to_pylist()
            if slot.dtype.is_document:  # Map / Json / Struct: stored as JSON text, read as objects
                out = [json.loads(v) if v else None for v in out]
        else:
            out = self._lists(slot)
        nulls = self.nulls(slot)
        if nulls is not None:
            for i in np.flatnonzero(nulls).tolist():
                out[i] = None
        return out

    def _lists(self, slot: Slot) -> list[Any]:
        element = slot.dtype.element
        assert element is not None
        start, length = self.payload(slot)
        if slot.kind == "list_fixed":
            np_dtype = FIXED[element.value_type][1]
            data, offsets = gather(self.buf, start, length)
            values = _fixed_arrow(data.view(np_dtype), slot.dtype.element)
            counts = offsets // np_dtype.itemsize
            fixed_lists: list[Any] = pa.LargeListArray.from_arrays(counts, values).to_pylist()
            return fixed_lists
        counts = np.zeros(len(start), dtype=np.int64)
        has_head = length >= 4  # always, for rows this store wrote; never read past a short payload
        counts[has_head] = read_u32(self.buf, start[has_head])
        counts = np.minimum(counts, np.maximum(length - 4, 0) // 4)
        lengths_bytes, _ = gather(self.buf, start + 4, counts * 4)
        element_lengths = lengths_bytes.view("<u4").astype(np.int64)
        data, _ = gather(self.buf, start + 4 + counts * 4, np.maximum(length - 4 - counts * 4, 0))
        element_offsets = np.zeros(len(element_lengths) + 1, dtype=np.int64)
        np.cumsum(element_lengths, out=element_offsets[1:])
        elements = _binary(element.arrow, data, element_offsets)
        list_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=list_offsets[1:])
        var_lists: list[Any] = pa.LargeListArray.from_arrays(list_offsets, elements).to_pylist()
        return var_lists


def _binary(arrow_type: pa.DataType, data: U8, offsets: I64) -> pa.Array:
    kind = pa.large_string() if pa.types.is_string(arrow_type) else pa.large_binary()
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(kind, len(offsets) - 1, buffers)


def _fixed_arrow(values: npt.NDArray[Any], dtype: Any) -> pa.Array:
    if pa.types.is_timestamp(dtype.arrow):
        return pa.array(values.astype(np.int64), pa.int64()).cast(TIMESTAMP_US)
    if pa.types.is_boolean(dtype.arrow):
        return pa.array(values.astype(bool))
    return pa.array(values)


_Decoded = tuple[list[int], dict[str, list[Any]]]


def _decode(group: _Group, current: ViewLayout, names: Sequence[str]) -> _Decoded:
    layout = group.layout
    kept = None if layout is current else set(same_features(layout.fields, current.fields, names))
    columns: dict[str, list[Any]] = {}
    for name in names:
        slot = layout.slots.get(name)
        if slot is None or (kept is not None and name not in kept):
            columns[name] = [None] * len(group.rec)
        else:
            columns[name] = group.values(slot, name)
    return group.rec["ets"].tolist(), columns


def _fast(layout: ViewLayout, blobs: Sequence[bytes | None]) -> _Group | None:
    """All rows present, fixed-width layout, current fingerprint: one ``frombuffer``."""
    if not blobs or layout.variable:
        return None
    try:
        joined = b"".join(blobs)  # type: ignore[arg-type]
    except TypeError:  # a None: some entity has no row
        return None
    if len(joined) != len(blobs) * layout.size:
        return None
    rec = np.frombuffer(joined, dtype=layout.record)
    return _Group(layout, [], rec) if bool((rec["fp"] == layout.fingerprint).all()) else None


def _small(layout: ViewLayout, blobs: Sequence[bytes | None], names: Sequence[str]) -> ViewRows | None:
    """A few rows of a fixed-width layout, with ``struct`` (numpy's per-call cost dominates there)."""
    row_struct = layout.row_struct
    if row_struct is None or len(blobs) > _SMALL:
        return None
    event_ts: list[int | None] = []
    values: dict[str, list[Any]] = {name: [] for name in names}
    for blob in blobs:
        if blob is None:
            event_ts.append(None)
            for name in names:
                values[name].append(None)
            continue
        if len(blob) != layout.size:
            return None
        row = row_struct.unpack(blob)
        if row[2] != layout.fingerprint:
            return None
        event_ts.append(row[0])
        nulls = int.from_bytes(row[3], "little")
        for name in names:
            slot = layout.slots.get(name)
            if slot is None or nulls >> slot.index & 1:
                values[name].append(None)
                continue
            value = row[layout.struct_index[name]]
            if slot.dtype.value_type == ValueType.UNIX_TIMESTAMP:
                value = micros_to_datetime(value)
            values[name].append(value)
    return ViewRows(event_ts, values)


# Rows per view up to which one struct call beats numpy (measured: 0.8x its time at 100 rows, 1.4x at 1,000).
_PLAIN_MAX_ROWS = 256


def _plain_indexes(layout: ViewLayout, names: Sequence[str]) -> tuple[int, ...] | None:
    """Where ``names`` sit in a ``row_struct`` tuple, when no value needs converting (every name is
    a fixed slot of ``layout``, none a bool or a timestamp)."""
    slots = [layout.slots.get(name) for name in names]
    plain = all(s is not None and s.dtype.value_type not in (ValueType.BOOL, ValueType.UNIX_TIMESTAMP) for s in slots)
    return tuple(layout.struct_index[name] for name in names) if layout.row_struct and names and plain else None


def _plain_rows(layout: ViewLayout, blobs: Sequence[bytes | None], names: Sequence[str]) -> ViewRows | None:
    """:func:`decode_plain_views` for one view."""
    decoded = decode_plain_views([layout], [names], blobs, len(blobs))
    return decoded[0] if decoded is not None else None


@dataclass(frozen=True)
class _PlainView:
    """Where one view's rows sit in the tuple unpacked for several views."""

    start: int
    stop: int
    step: int  # items per row: event ts, created ts, fingerprint, null bits, then the fields
    fingerprint: int
    no_nulls: bytes
    names: tuple[str, ...]
    indexes: tuple[int, ...]  # of names, within a row
    pick: Callable[[tuple[Any, ...]], Any]  # names of the first row, in one call
    layout: ViewLayout
    offset: int  # of the view's first record in the joined blobs, in bytes


_PLAIN_SHAPES: dict[Any, tuple[struct.Struct, list[_PlainView]] | None] = {}


def _plain_shape(
    layouts: Sequence[ViewLayout], names: Sequence[Sequence[str]], rows: int
) -> tuple[struct.Struct, list[_PlainView]] | None:
    """The one ``struct`` for ``rows`` rows of each view and each view's place in its output; cached."""
    key = (tuple(layouts), tuple(map(tuple, names)), rows)
    try:
        return _PLAIN_SHAPES[key]
    except KeyError:
        pass
    shape: tuple[struct.Struct, list[_PlainView]] | None = None
    indexes = [_plain_indexes(layout, view_names) for layout, view_names in zip(layouts, names, strict=True)]
    if all(found is not None for found in indexes) and rows <= _PLAIN_MAX_ROWS:
        views, formats, start, offset = [], [], 0, 0
        for layout, view_names, found in zip(layouts, key[1], indexes, strict=True):
            assert found is not None and layout.row_struct is not None  # _plain_indexes checked both
            step = 4 + len(layout.struct_index)
            first = [start + i for i in found]
            pick = operator.itemgetter(*first) if len(first) > 1 else _one(first[0])
            fingerprint, no_nulls = layout.fingerprint, bytes(layout.null_bytes)
            stop = start + step * rows
            views.append(_PlainView(start, stop, step, fingerprint, no_nulls, view_names, found, pick, layout, offset))
            formats.append(layout.row_struct.format.lstrip("<") * rows)
            start += step * rows
            offset += layout.size * rows
        shape = (struct.Struct("<" + "".join(formats)), views)
    if len(_PLAIN_SHAPES) >= 1024:
        _PLAIN_SHAPES.clear()
    _PLAIN_SHAPES[key] = shape
    return shape


def _one(position: int) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    return lambda row: (row[position],)


def decode_plain_views(
    layouts: Sequence[ViewLayout], names: Sequence[Sequence[str]], blobs: Sequence[bytes | None], rows: int
) -> list[ViewRows] | None:
    """Several views' blobs (``rows`` per view, one view after another) decoded with one ``struct``
    call: the usual read over many views, where every row is present under the current fixed-width
    layout of its view, without nulls, and only plain values are asked for. ``None`` when that does
    not hold; then decode each view with :func:`decode_view`.
    """
    if not rows:
        return None
    shape = _plain_shape(layouts, names, rows)
    if shape is None:
        return None
    packer, views = shape
    try:
        joined = b"".join(blobs)  # type: ignore[arg-type]
    except TypeError:  # a None: some entity has no row
        return None
    if len(joined) != packer.size:
        return None
    flat = packer.unpack(joined)
    out = []
    if rows == 1:  # the same as below without slicing
        for view in views:
            start = view.start
            if flat[start + 2] != view.fingerprint or flat[start + 3] != view.no_nulls:
                return None
            values = dict(zip(view.names, [[v] for v in view.pick(flat)], strict=True))
            out.append(ViewRows([flat[start]], values, (view.layout, joined, view.offset)))
        return out
    for view in views:
        start, stop, step = view.start, view.stop, view.step
        if flat[start + 2 : stop : step].count(view.fingerprint) != rows:
            return None
        if flat[start + 3 : stop : step].count(view.no_nulls) != rows:
            return None
        picks = zip(view.names, view.indexes, strict=True)
        values = {name: list(flat[start + i : stop : step]) for name, i in picks}
        out.append(ViewRows(list(flat[start:stop:step]), values, (view.layout, joined, view.offset)))
    return out


def decode_view(layout: ViewLayout, blobs: Sequence[bytes | None], names: Sequence[str], resolve: Resolver) -> ViewRows:
    """Decode one view's blobs (``None`` = no row) into :class:`ViewRows` with features ``names``.

    Rows that cannot be decoded (unknown layout, wrong size) read as missing.
    """
    plain = _plain_rows(layout, blobs, names)
    if plain is not None:
        return plain
    small = _small(layout, blobs, names)
    if small is not None:
        return small
    fast = _fast(layout, blobs)
    if fast is not None:
        ets, columns = _decode(fast, layout, names)
        return ViewRows(ets, columns)  # type: ignore[arg-type]
    n = len(blobs)
    event_ts: list[int | None] = [None] * n
    values: dict[str, list[Any]] = {name: [None] * n for name in names}
    for fp, (positions, members) in group_by_fingerprint(blobs, FINGERPRINT_AT).items():
        group_layout = layout if fp == layout.fingerprint else resolve(fp)
        if group_layout is None:
            continue
        group = _valid_group(group_layout, positions, members)
        ets, columns = _decode(group, layout, names)
        for i, ts in zip(positions, ets, strict=True):
            event_ts[i] = ts
        scatter(values, positions, columns)
    return ViewRows(event_ts, values)


def _valid_group(layout: ViewLayout, positions: list[int], members: list[bytes]) -> _Group:
    """The group of well-formed blobs; ``positions`` is pruned in place to match."""
    keep = [len(b) == layout.size if not layout.variable else len(b) >= layout.size for b in members]
    if not all(keep):
        positions[:] = [p for p, k in zip(positions, keep, strict=True) if k]
        members = [m for m, k in zip(members, keep, strict=True) if k]
    group = _Group(layout, members)
    if layout.variable:
        total = np.full(len(members), layout.size, dtype=np.int64)
        for rank in range(len(layout.variable)):
            total += group.rec[f"l{rank}"]
        sizes = np.fromiter(map(len, members), dtype=np.int64, count=len(members))
        bad = total != sizes
        if bad.any():
            good = np.flatnonzero(~bad).tolist()
            positions[:] = [positions[i] for i in good]
            group = _Group(layout, [members[i] for i in good])
    return group
