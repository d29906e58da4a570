"""Served responses → one Arrow table of log rows (the flusher's work, never the request path's).

Columns (the contract in docs/feature-logging.md): ``request_id`` (string), ``log_time``
(timestamp[us, UTC], the log source's event time), ``variant`` (string, null without a split), each
join-key column under its own name, and per served feature ``<view>__<feature>`` (the value),
``<view>__<feature>__status`` (the status name: PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE) and
``<view>__<feature>__event_timestamp`` (timestamp[us, UTC], null when nothing was found).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ladle.definitions.refs import ViewSelection
from ladle.types import FieldStatus

if TYPE_CHECKING:
    from ladle.retrieval.response import OnlineResponse

REQUEST_ID = "request_id"
LOG_TIME = "log_time"
VARIANT = "variant"
STATUS_SUFFIX = "__status"
TIMESTAMP_SUFFIX = "__event_timestamp"
_TS = pa.timestamp("us", tz="UTC")
_STATUS_NAMES = pa.array([s.name for s in sorted(FieldStatus, key=int)], pa.string())
_STATUS_CODES = [int(s) for s in sorted(FieldStatus, key=int)]


@dataclass(frozen=True)
class LogLayout:
    """How one service's responses map to log columns: feature output columns in response order."""

    keys: tuple[tuple[str, pa.DataType], ...]  # join-key columns (response order) and their types
    features: tuple[tuple[str, pa.DataType], ...]  # ``<view>__<feature>`` and the value type

    @classmethod
    def of(cls, selections: Sequence[ViewSelection]) -> LogLayout:
        """The layout of a service resolved into ``selections`` (``ladle.definitions.refs.resolve``)."""
        keys: dict[str, pa.DataType] = {}
        features: list[tuple[str, pa.DataType]] = []
        for sel in selections:
            for column, fld in zip(sel.entity_columns(), sel.view.entity_columns, strict=False):
                keys.setdefault(column, fld.dtype.arrow)
            for out, name in zip(sel.output_names(True), sel.features, strict=True):
                features.append((out, sel.view.feature(name).dtype.arrow))
        return cls(tuple(keys.items()), tuple(features))

    def schema(self) -> pa.Schema:
        """The Arrow schema of the log table."""
        fields = [pa.field(REQUEST_ID, pa.string()), pa.field(LOG_TIME, _TS), pa.field(VARIANT, pa.string())]
        fields += [pa.field(name, kind) for name, kind in self.keys]
        for name, kind in self.features:
            fields += [
                pa.field(name, kind),
                pa.field(name + STATUS_SUFFIX, pa.string()),
                pa.field(name + TIMESTAMP_SUFFIX, _TS),
            ]
        return pa.schema(fields)


#: One logged request as queued by the request path: (request id, log time in seconds since the
#: epoch, the response). The response's column lists are referenced, never copied.
Entry = tuple[str, float, "OnlineResponse"]


def _chain(columns: Sequence[list[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(columns))


def _statuses(columns: Sequence[list[int]]) -> pa.Array:
    codes = np.fromiter(itertools.chain.from_iterable(columns), dtype=np.int64)
    index = np.searchsorted(_STATUS_CODES, codes)
    return _STATUS_NAMES.take(pa.array(index))


def _stamps(columns: Sequence[list[int]]) -> pa.Array:
    micros = np.fromiter(itertools.chain.from_iterable(columns), dtype=np.int64)
    return pa.array(micros, pa.int64(), mask=micros == 0).cast(_TS)


def build_table(layout: LogLayout, entries: Sequence[Entry]) -> pa.Table:
    """The log rows of ``entries`` (all of one service, same layout) as one table.

    Per-request values (id, time, variant) are spread over the request's entity rows with one
    NumPy ``repeat`` of row indices; the response columns are concatenated column by column.
    """
    schema = layout.schema()
    width = len(layout.keys) + len(layout.features)
    usable = [e for e in entries if len(e[2].values) == width]
    if not usable:
        return schema.empty_table()
    responses = [e[2] for e in usable]
    counts = np.fromiter((len(r.values[0]) for r in responses), dtype=np.int64, count=len(responses))
    index = np.repeat(np.arange(len(usable)), counts)
    total = len(index)
    seconds = np.fromiter((e[1] for e in usable), dtype=np.float64, count=len(usable))
    micros = (seconds * 1_000_000).astype(np.int64)
    variants = [getattr(r, "variant", None) for r in responses]
    arrays: list[pa.Array] = [
        pa.array([e[0] for e in usable], pa.string()).take(pa.array(index)),
        pa.array(micros[index]).cast(_TS),
        pa.array(variants, pa.string()).take(pa.array(index)) if any(variants) else pa.nulls(total, pa.string()),
    ]
    for name, kind in layout.keys:  # key columns come in the request's order: found by name
        arrays.append(pa.array(_chain([r.values[r.feature_names.index(name)] for r in responses]), kind))
    first = len(layout.keys)
    # Responses share one status list among fully present columns and one timestamp list among a
    # view's columns: columns made of the same lists are converted once.
    statuses: dict[tuple[int, ...], pa.Array] = {}
    stamps: dict[tuple[int, ...], pa.Array] = {}
    for j, (_, kind) in enumerate(layout.features, start=first):
        arrays.append(pa.array(_chain([r.values[j] for r in responses]), kind))
        status_lists = [r.statuses[j] for r in responses]
        key = tuple(map(id, status_lists))
        if key not in statuses:
            statuses[key] = _statuses(status_lists)
        arrays.append(statuses[key])
        stamp_lists = [r.event_timestamps[j] for r in responses]
        key = tuple(map(id, stamp_lists))
        if key not in stamps:
            stamps[key] = _stamps(stamp_lists)
        arrays.append(stamps[key])
    return pa.Table.from_arrays(arrays, schema=schema)
