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
from typing import Any

import numpy as np
import pyarrow as pa

from ladle.definitions.refs import ViewSelection
from ladle.types import FieldStatus

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


@dataclass(frozen=True)
class Entry:
    """One logged request: references to the response's columns (nothing copied on the request path)."""

    request_id: str
    log_time_us: int
    variant: str | None
    feature_names: list[str]
    values: list[list[Any]]
    statuses: list[list[int]]
    event_timestamps: list[list[int]]

    @property
    def rows(self) -> int:
        """Entity rows in the response."""
        return len(self.values[0]) if self.values else 0


def _chain(columns: list[list[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(columns))


def _statuses(columns: list[list[int]]) -> pa.Array:
    codes = np.fromiter(itertools.chain.from_iterable(columns), dtype=np.int64)
    index = np.searchsorted(_STATUS_CODES, codes)
    return _STATUS_NAMES.take(pa.array(index))


def _stamps(columns: list[list[int]]) -> pa.Array:
    micros = np.fromiter(itertools.chain.from_iterable(columns), dtype=np.int64)
    return pa.array(micros, pa.int64(), mask=micros == 0).cast(_TS)


def build_table(layout: LogLayout, entries: Sequence[Entry]) -> pa.Table:
    """The log rows of ``entries`` (all of one service, same layout) as one table."""
    schema = layout.schema()
    usable = [e for e in entries if len(e.values) == len(layout.keys) + len(layout.features)]
    if not usable:
        return schema.empty_table()
    counts = [e.rows for e in usable]
    arrays: list[pa.Array] = [
        pa.array(_chain([[e.request_id] * n for e, n in zip(usable, counts, strict=True)]), pa.string()),
        _stamps([[e.log_time_us] * n for e, n in zip(usable, counts, strict=True)]),
        pa.array(_chain([[e.variant] * n for e, n in zip(usable, counts, strict=True)]), pa.string()),
    ]
    for i, (_, kind) in enumerate(layout.keys):
        arrays.append(pa.array(_chain([e.values[i] for e in usable]), kind))
    first = len(layout.keys)
    for j, (_, kind) in enumerate(layout.features, start=first):
        arrays.append(pa.array(_chain([e.values[j] for e in usable]), kind))
        arrays.append(_statuses([e.statuses[j] for e in usable]))
        arrays.append(_stamps([e.event_timestamps[j] for e in usable]))
    return pa.Table.from_arrays(arrays, schema=schema)
