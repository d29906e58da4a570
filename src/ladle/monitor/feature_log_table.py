"""Served responses → one Arrow table of log rows (the flusher's work, never the request path's).

Columns (the contract in docs/feature-logging.md): ``request_id`` (string), ``log_time``
(timestamp[us, UTC], the log source's event time), ``variant`` (string, null without a split),
``sample_rate`` (float64: the probability with which the request was logged), each
join-key column under its own name, and per served feature ``<view>__<feature>`` (the value),
``<view>__<feature>__status`` (the status name: PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE) and
``<view>__<feature>__event_timestamp`` (timestamp[us, UTC], null when nothing was found).
"""

from __future__ import annotations

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
SAMPLE_RATE = "sample_rate"
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

    @property
    def width(self) -> int:
        """Columns of a response of this service: its join keys, then its features."""
        return len(self.keys) + len(self.features)

    def schema(self) -> pa.Schema:
        """The Arrow schema of the log table."""
        fields = [pa.field(REQUEST_ID, pa.string()), pa.field(LOG_TIME, _TS), pa.field(VARIANT, pa.string())]
        fields.append(pa.field(SAMPLE_RATE, pa.float64()))
        fields += [pa.field(name, kind) for name, kind in self.keys]
        for name, kind in self.features:
            fields += [
                pa.field(name, kind),
                pa.field(name + STATUS_SUFFIX, pa.string()),
                pa.field(name + TIMESTAMP_SUFFIX, _TS),
            ]
        return pa.schema(fields)


@dataclass(frozen=True)
class RecordShape:
    """How the store records of one response shape map to log columns: per view read, its first
    response column, the record size and dtype (:class:`~ladle.online.codec.stamped.ViewLayout`'s),
    and each feature's record field. Picklable: sent once to the log writer, then named by number."""

    views: tuple[tuple[int, int, np.dtype[Any], tuple[tuple[str, str], ...]], ...]

    @classmethod
    def of(cls, records: Sequence[tuple[Any, Any]]) -> RecordShape:
        """The shape of :attr:`OnlineResponse.records` (``(ViewRead, (layout, buffer, offset))`` pairs)."""
        views = []
        for read, (layout, _, _) in records:
            fields = tuple((f, layout.slots[f].field) for f in read.features)
            views.append((read.start, layout.size, layout.record, fields))
        return cls(tuple(views))


class Batch:
    """Logged requests of one service since the last hand-over, column by column.

    Per request: its id, time (seconds since the epoch), variant, sample rate and number of entity rows; per
    join-key column (by name) the values of every row. The features come either as store records
    (``shape``, and per view read one buffer holding every row's record: the usual read, every row
    present) or as Python columns (``values``, ``statuses``, ``event_timestamps``: per feature, every
    row's value). Built by the serving process one request at a time (:meth:`add_records`,
    :meth:`add_values`), pickled whole to the log writer, turned into a table by :func:`build_table`.
    """

    __slots__ = (
        "event_timestamps", "ids", "keys", "rates", "records", "rows", "shape", "statuses", "times", "values",
        "variants",
    )  # fmt: skip

    def __init__(self, key_names: Sequence[str], width: int, shape: RecordShape | None) -> None:
        self.ids: list[str] = []
        self.times: list[float] = []
        self.variants: list[str | None] = []
        self.rates: list[float] = []
        self.rows: list[int] = []
        self.keys: dict[str, list[Any]] = {name: [] for name in key_names}
        self.shape = shape
        #: Per view read, the requests' record slices (views of the response's buffer, not copies):
        #: joined into one buffer per view when the batch is pickled for the writer.
        self.records: list[list[Any]] | None = [[] for _ in shape.views] if shape is not None else None
        columns = shape is None
        self.values: list[list[Any]] | None = [[] for _ in range(width)] if columns else None
        self.statuses: list[list[int]] | None = [[] for _ in range(width)] if columns else None
        self.event_timestamps: list[list[int]] | None = [[] for _ in range(width)] if columns else None

    def __getstate__(self) -> tuple[Any, ...]:
        # Text key columns travel as one string each: pickling a hundred distinct short strings costs
        # several times more than joining them (and the serving process pays for the hand-over).
        packed: dict[str, Any] = {
            "keys": {name: _packed(column) for name, column in self.keys.items()},
            "records": [b"".join(parts) for parts in self.records] if self.records is not None else None,
        }
        return tuple(packed[name] if name in packed else getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)
        self.keys = {name: _unpacked(column) for name, column in self.keys.items()}
        if self.records is not None:
            self.records = [[buffer] for buffer in self.records]

    def _request(self, request_id: str, when: float, response: OnlineResponse, rate: float) -> int:
        rows = len(response.values[0])
        self.ids.append(request_id)
        self.times.append(when)
        self.variants.append(response.variant)
        self.rates.append(rate)
        self.rows.append(rows)
        names = response.feature_names
        for name, column in self.keys.items():
            column.extend(response.values[names.index(name)])
        return rows

    def add_records(self, request_id: str, when: float, response: OnlineResponse, rate: float = 1.0) -> None:
        """One request whose response carries store records of this batch's shape (logged with
        probability ``rate``)."""
        rows = self._request(request_id, when, response, rate)
        records = response.records
        assert records is not None and self.records is not None
        if len(records) == 1:  # the usual read: one view
            _, (layout, data, offset) = records[0]
            self.records[0].append(memoryview(data)[offset : offset + rows * layout.size])
            return
        for parts, (_, (layout, data, offset)) in zip(self.records, records, strict=True):
            parts.append(memoryview(data)[offset : offset + rows * layout.size])

    def add_values(self, request_id: str, when: float, response: OnlineResponse, rate: float = 1.0) -> None:
        """One request taken from its Python columns (the features after its key columns)."""
        self._request(request_id, when, response, rate)
        first = len(self.keys)
        for target, column in zip(self.values, response.values[first:], strict=True):  # type: ignore[arg-type]
            target.extend(column)
        for target, column in zip(self.statuses, response.statuses[first:], strict=True):  # type: ignore[arg-type]
            target.extend(column)
        for target, column in zip(self.event_timestamps, response.event_timestamps[first:], strict=True):  # type: ignore[arg-type]
            target.extend(column)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def joined(cls, batches: Sequence[Batch]) -> Batch:
        """One batch of the requests of ``batches`` (all of one kind and shape), in order."""
        first = batches[0]
        width = len(first.values) if first.values is not None else 0
        out = cls(list(first.keys), width, first.shape)
        for batch in batches:
            out.ids += batch.ids
            out.times += batch.times
            out.variants += batch.variants
            out.rates += batch.rates
            out.rows += batch.rows
            for name, column in out.keys.items():
                column.extend(batch.keys[name])
            for mine, theirs in (
                (out.records, batch.records), (out.values, batch.values),
                (out.statuses, batch.statuses), (out.event_timestamps, batch.event_timestamps),
            ):  # fmt: skip
                for target, part in zip(mine or (), theirs or (), strict=True):
                    target.extend(part)
        return out


#: Joins a text key column for the hand-over (a control character no key is expected to hold; a
#: column holding it travels as a list).
_SEPARATOR = "\x1f"


class _Joined(str):
    """A text column joined by :data:`_SEPARATOR` (tells it apart from a list after pickling)."""

    __slots__ = ()


def _packed(column: list[Any]) -> list[Any] | _Joined:
    """``column`` as one joined string when every value is text without the separator, else itself."""
    if not column:
        return column
    try:
        text = _SEPARATOR.join(column)
    except TypeError:  # not all text
        return column
    return _Joined(text) if text.count(_SEPARATOR) == len(column) - 1 else column


def _unpacked(column: list[Any] | _Joined) -> list[Any]:
    return column.split(_SEPARATOR) if isinstance(column, _Joined) else column


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    """``pa.array(values, kind)``, an order of magnitude faster for plain values: pyarrow converts a
    list of floats 10x faster when it infers the type than when it is given one (pyarrow 26: 2
    against 28 µs per 100 floats), so infer, then cast; a list the inference or the cast refuses goes
    the typed way, which accepts or rejects it as before."""
    try:
        array = pa.array(values)
        return array if array.type == kind else array.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.array(values, kind)


def _statuses(codes: list[int]) -> pa.Array:
    index = np.searchsorted(_STATUS_CODES, np.asarray(codes, dtype=np.int64))
    return _STATUS_NAMES.take(pa.array(index))


def _stamps(values: list[int]) -> pa.Array:
    micros = np.asarray(values, dtype=np.int64)
    return pa.array(micros, pa.int64(), mask=micros == 0).cast(_TS)


def build_table(layout: LogLayout, batches: Sequence[Batch]) -> pa.Table:
    """The log rows of ``batches`` (all of one service, same layout) as one table, in order.

    A batch of store records is decoded with NumPy (:func:`_from_records`), a batch of Python
    columns converted column by column (:func:`_from_values`): a few calls per batch whatever its
    size. Batches whose width does not match the layout (a service changed meanwhile) are left out.
    """
    schema = layout.schema()
    tables = []
    groups: dict[int, list[Batch]] = {}  # batches of one kind and shape are converted as one
    for batch in batches:
        if len(batch) and fits(layout, batch):
            groups.setdefault(id(batch.shape), []).append(batch)
    for group in groups.values():
        batch = group[0] if len(group) == 1 else Batch.joined(group)
        tables.append((_from_records if batch.shape is not None else _from_values)(layout, schema, batch))
    if not tables:
        return schema.empty_table()
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def fits(layout: LogLayout, batch: Batch) -> bool:
    """Whether ``batch`` has the columns of ``layout`` (not so if the service changed meanwhile)."""
    if batch.shape is not None:
        return sum(len(view[3]) for view in batch.shape.views) == len(layout.features)
    return batch.values is not None and len(batch.values) == len(layout.features)


def _common_columns(layout: LogLayout, batch: Batch) -> list[pa.Array]:
    """``request_id``, ``log_time``, ``variant`` and ``sample_rate`` (each request's value spread
    over its rows), then the join keys."""
    counts = np.asarray(batch.rows, dtype=np.int64)
    index = pa.array(np.repeat(np.arange(len(counts)), counts))
    micros = (np.asarray(batch.times, dtype=np.float64) * 1_000_000).astype(np.int64)
    total = int(counts.sum())
    variants = batch.variants
    arrays = [
        pa.array(batch.ids, pa.string()).take(index),
        pa.array(micros).cast(_TS).take(index),
        pa.array(variants, pa.string()).take(index) if any(variants) else pa.nulls(total, pa.string()),
        pa.array(np.repeat(np.asarray(batch.rates, dtype=np.float64), counts)),
    ]
    arrays += [_array(batch.keys[name], kind) for name, kind in layout.keys]
    return arrays


def _from_records(layout: LogLayout, schema: pa.Schema, batch: Batch) -> pa.Table:
    """A batch of store records: per view, its buffer read as a NumPy record array; every status
    PRESENT (records are kept only for such reads)."""
    arrays = _common_columns(layout, batch)
    assert batch.shape is not None and batch.records is not None
    columns: list[tuple[pa.Array, pa.Array]] = []
    for parts, (_, _, record, fields) in zip(batch.records, batch.shape.views, strict=True):
        rec = np.frombuffer(parts[0] if len(parts) == 1 else b"".join(parts), dtype=record)
        stamps = pa.array(np.ascontiguousarray(rec["ets"])).cast(_TS)
        columns += [(pa.array(np.ascontiguousarray(rec[field])), stamps) for _, field in fields]
    present = _STATUS_NAMES.take(pa.array(np.full(sum(batch.rows), _STATUS_CODES.index(int(FieldStatus.PRESENT)))))
    for (_, kind), (values, stamps) in zip(layout.features, columns, strict=True):
        arrays += [values.cast(kind), present, stamps]
    return pa.Table.from_arrays(arrays, schema=schema)


def _from_values(layout: LogLayout, schema: pa.Schema, batch: Batch) -> pa.Table:
    """A batch of Python columns, converted column by column."""
    assert batch.values is not None and batch.statuses is not None and batch.event_timestamps is not None
    arrays = _common_columns(layout, batch)
    for (_, kind), values, statuses, stamps in zip(
        layout.features, batch.values, batch.statuses, batch.event_timestamps, strict=True
    ):
        arrays += [_array(values, kind), _statuses(statuses), _stamps(stamps)]
    return pa.Table.from_arrays(arrays, schema=schema)
