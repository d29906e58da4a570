"""Rule 1 of docs/streaming.md: Kafka message values → one Arrow table per partition micro-batch.

A :class:`Decoder` is built once per :class:`KafkaSource` from its message format and the views
that read it. :meth:`Decoder.decode` takes the values of one partition's messages in offset order
and returns the rows that decoded (the source's columns after ``field_mapping``, timestamps as
``timestamp[us, UTC]``, plus ``_kafka_partition`` and ``_kafka_offset``) and the messages that did
not, each with its reason (``undecodable`` or ``schema``) and a one-line detail.

Messages are parsed one by one (orjson, fastavro); everything after that is per column: a column's
values are checked by the set of Python types they hold and converted with one ``pa.array`` call.
Only a column that fails that check is walked value by value to find the offending messages.

Which columns are read:

* the format's declared fields (``JsonFormat`` with a ``schema_json``, ``AvroFormat``), all of them;
* else (``JsonFormat()``) the columns the views name: join keys, the event and created
  timestamps, the features of views without a ``udf`` and the columns their aggregations read
  (as Float64). Other fields of the message are not kept. A ``udf`` that reads fields nobody
  declares needs a ``schema_json``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from ladle.definitions import KafkaSource, StreamFeatureView
from ladle.definitions.formats import AvroFormat
from ladle.errors import DefinitionError, MissingExtraError
from ladle.types import Bool, Bytes, DType, Float32, Float64, Int32, Int64, String, UnixTimestamp

PARTITION = "_kafka_partition"
OFFSET = "_kafka_offset"
TS_TYPE = pa.timestamp("us", tz="UTC")
UNDECODABLE = "undecodable"
SCHEMA = "schema"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NONE = type(None)
#: Python types a JSON/Avro value may have for each dtype (bool is not a number here).
_ALLOWED: dict[DType, frozenset[type]] = {
    String: frozenset({str, _NONE}),
    Int32: frozenset({int, _NONE}),
    Int64: frozenset({int, _NONE}),
    Float32: frozenset({int, float, _NONE}),
    Float64: frozenset({int, float, _NONE}),
    Bool: frozenset({bool, _NONE}),
    Bytes: frozenset({bytes, str, _NONE}),
    UnixTimestamp: frozenset({str, int, float, _NONE}),
}


@dataclass(frozen=True)
class Column:
    """One column of the decoded table."""

    name: str  # after field_mapping
    field: str  # as named in the message
    dtype: DType | None  # None: a join key whose dtype nobody declared (str or int, as given)
    required: bool  # join keys and timestamps: missing or null is a schema error
    #: for UnixTimestamp: what one unit of a number is, in µs (JSON seconds: 1e6; Avro millis: 1000)
    unit_us: int = 1_000_000


@dataclass
class Rejected:
    """A message that did not decode: its index in the batch, reason and detail."""

    index: int
    reason: str
    detail: str


@dataclass
class Decoded:
    """The result of one :meth:`Decoder.decode` call."""

    table: pa.Table
    rejected: list[Rejected] = field(default_factory=list)


class Decoder:
    """Decodes the messages of one Kafka source for the views that read it."""

    def __init__(self, source: KafkaSource, views: Sequence[StreamFeatureView]) -> None:
        self.source = source
        self.columns = _columns(source, views)
        self.schema = pa.schema(
            [pa.field(c.name, c.dtype.arrow if c.dtype is not None else pa.string()) for c in self.columns]
            + [pa.field(PARTITION, pa.int32()), pa.field(OFFSET, pa.int64())]
        )
        fmt = source.message_format
        self._parse: Callable[[bytes], Any]
        if isinstance(fmt, AvroFormat):
            self._parse = _avro_parser(fmt)
        else:
            self._parse = orjson.loads

    def decode(self, values: Sequence[bytes | None], partition: int | Sequence[int], offsets: Sequence[int]) -> Decoded:
        """Decode messages (each partition's in offset order): of one ``partition``, or of several, with
        one partition per message (the stream loop decodes a turn's messages of a source at once)."""
        rejected: list[Rejected] = []
        records: list[dict[str, Any]] = []
        kept: list[int] = []
        parse = self._parse
        for i, value in enumerate(values):
            if value is None:
                rejected.append(Rejected(i, UNDECODABLE, "the message has no value"))
                continue
            try:
                record = parse(value)
            except Exception as exc:  # any parse failure of foreign bytes is the message's fault
                rejected.append(Rejected(i, UNDECODABLE, _one_line(exc)))
                continue
            if not isinstance(record, dict):
                rejected.append(Rejected(i, UNDECODABLE, f"not a JSON object or Avro record: {type(record).__name__}"))
                continue
            records.append(record)
            kept.append(i)
        bad: dict[int, str] = {}  # position in records → detail
        arrays: list[pa.Array] = []
        for column in self.columns:
            arrays.append(_convert(column, [r.get(column.field) for r in records], bad))
        n = len(records)
        if isinstance(partition, int):
            arrays.append(pa.array([partition] * n, pa.int32()))
        else:
            arrays.append(pa.array([partition[i] for i in kept], pa.int32()))
        arrays.append(pa.array([offsets[i] for i in kept], pa.int64()))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if bad:
            mask = pa.array([j not in bad for j in range(n)])
            table = table.filter(mask)
            rejected.extend(Rejected(kept[j], SCHEMA, detail) for j, detail in bad.items())
            rejected.sort(key=lambda r: r.index)
        return Decoded(table, rejected)


# -- columns ----------------------------------------------------------------------------------------


def _columns(source: KafkaSource, views: Sequence[StreamFeatureView]) -> list[Column]:
    mapping = source.field_mapping
    reverse = {dst: src for src, dst in mapping.items()}
    required = {source.timestamp_field} | ({source.created_timestamp_column} - {""})
    for view in views:
        required.update(view.join_keys)
    declared = source.message_format.fields()
    units = _avro_units(source.message_format) if isinstance(source.message_format, AvroFormat) else {}
    if declared:
        out = [
            Column(mapping.get(f, f), f, d, mapping.get(f, f) in required, units.get(f, 1_000_000)) for f, d in declared
        ]
        names = {c.name for c in out}
        for name in sorted(required - names):
            raise DefinitionError(
                f"kafka source '{source.name}': its message format declares no field for '{name}' "
                f"(a join key or timestamp); declare '{reverse.get(name, name)}' in schema_json"
            )
        for c in out:
            if c.name in {source.timestamp_field, source.created_timestamp_column} and c.dtype != UnixTimestamp:
                raise DefinitionError(
                    f"kafka source '{source.name}': field '{c.field}' is its timestamp but is declared {c.dtype}"
                )
        return out
    wanted: dict[str, DType | None] = {source.timestamp_field: UnixTimestamp}
    if source.created_timestamp_column:
        wanted[source.created_timestamp_column] = UnixTimestamp
    for view in views:
        typed = {f.name: f.dtype for f in view.entity_columns}
        for key in view.join_keys:
            _want(source, wanted, key, typed.get(key))
        if view.udf is not None:
            continue
        if view.aggregations:
            for agg in view.aggregations:
                _want(source, wanted, agg.column, Float64)
        else:
            for f in view.features:
                _want(source, wanted, f.name, f.dtype)
    return [Column(name, reverse.get(name, name), dtype, name in required) for name, dtype in wanted.items()]


def _want(source: KafkaSource, wanted: dict[str, DType | None], name: str, dtype: DType | None) -> None:
    have = wanted.get(name)
    if name in wanted and have is not None and dtype is not None and have != dtype:
        raise DefinitionError(
            f"kafka source '{source.name}': views read column '{name}' as {have} and as {dtype}; "
            "declare the message fields in the format's schema_json"
        )
    if have is None:
        wanted[name] = dtype


def _convert(column: Column, values: list[Any], bad: dict[int, str]) -> pa.Array:
    """``values`` as an Arrow array of the column's type; offending positions go to ``bad`` (as null)."""
    kinds = {type(v) for v in values}
    dtype = column.dtype
    target = dtype.arrow if dtype is not None else None
    if column.required and _NONE in kinds:
        for j, v in enumerate(values):
            if v is None:
                bad.setdefault(j, f"'{column.field}' is missing or null")
        values = [None if j in bad else v for j, v in enumerate(values)]
    if dtype == UnixTimestamp:
        return _timestamps(column, values, bad)
    allowed = _ALLOWED.get(dtype) if dtype is not None else frozenset({str, int, _NONE})
    if dtype is not None and dtype.is_list:
        allowed = frozenset({list, _NONE})
    if allowed is not None and kinds <= allowed:
        try:
            arr = pa.array(values, type=target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        else:
            if target is None and not (pa.types.is_string(arr.type) or pa.types.is_integer(arr.type)):
                pass  # mixed str and int keys: walk them below
            else:
                return arr
    out: list[Any] = []
    for j, v in enumerate(values):
        fits = v is None or _fits(v, dtype, target)
        if not fits:
            bad.setdefault(j, f"'{column.field}' is {_describe(v)}, not {dtype or 'a string or integer'}")
        out.append(v if fits else None)
    if target is None:  # an undeclared key type: the first kind seen
        first = next((v for v in out if v is not None), "")
        if isinstance(first, int):
            out = [v if isinstance(v, int) or v is None else None for v in out]
        return pa.array(out, type=pa.int64() if isinstance(first, int) else pa.string())
    return pa.array(out, type=target)


def _fits(value: Any, dtype: DType | None, target: pa.DataType | None) -> bool:
    if dtype is None:
        return type(value) in (str, int)
    allowed = _ALLOWED.get(dtype, frozenset({list}))
    if type(value) not in allowed:
        return False
    try:
        pa.array([value], type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return False
    return True


def _timestamps(column: Column, values: list[Any], bad: dict[int, str]) -> pa.Array:
    unit = column.unit_us
    out: list[int | None] = []
    for j, v in enumerate(values):
        kind = type(v)
        try:
            if v is None:
                out.append(None)
            elif kind is int:
                out.append(v * unit)
            elif kind is str:
                stamp = datetime.fromisoformat(v)
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=UTC)
                out.append((stamp - _EPOCH) // _US)
            elif kind is float and unit == 1_000_000:
                out.append(round(v * 1_000_000))
            else:
                raise ValueError(f"{_describe(v)}, not a timestamp")
        except (ValueError, OverflowError) as exc:
            bad.setdefault(j, f"'{column.field}' cannot be read as a time: {_one_line(exc)}")
            out.append(None)
    try:
        return pa.array(out, type=pa.int64()).cast(TS_TYPE)
    except (pa.ArrowInvalid, OverflowError):  # pragma: no cover - int64 µs covers every datetime
        bad.update({j: f"'{column.field}' is out of range" for j in range(len(out))})
        return pa.nulls(len(out), TS_TYPE)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# -- Avro -------------------------------------------------------------------------------------------


def _avro_units(fmt: AvroFormat) -> dict[str, int]:
    """Field → µs per unit for the timestamp fields (millis: 1000, micros: 1)."""
    out: dict[str, int] = {}
    for f in json.loads(fmt.schema_json)["fields"]:
        for branch in f["type"] if isinstance(f["type"], list) else [f["type"]]:
            if isinstance(branch, dict) and branch.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
                out[f["name"]] = 1000 if branch["logicalType"] == "timestamp-millis" else 1
    return out


def _strip_logical(schema: Any) -> Any:
    """The schema with timestamp logical types removed: they are read as longs and converted per column."""
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    if isinstance(schema, dict):
        if schema.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            return schema["type"]
        return {k: _strip_logical(v) for k, v in schema.items()}
    return schema


def _avro_parser(fmt: AvroFormat) -> Callable[[bytes], Any]:
    """A function reading one binary Avro record, schemaless or in Confluent's framing.

    Confluent framing is a 0 byte and a 4-byte schema id before the record. A value that starts
    with 0 is read as framed first, and taken as framed when that reading uses every byte;
    otherwise it is read as a bare record, which must also use every byte.
    """
    try:
        from fastavro import parse_schema, schemaless_reader
    except ImportError:  # pragma: no cover - the stream extra brings it
        raise MissingExtraError("Avro stream", "stream", "fastavro") from None
    parsed = parse_schema(_strip_logical(json.loads(fmt.schema_json)))

    def read_exact(data: bytes, start: int) -> Any:
        buf = io.BytesIO(data)
        buf.seek(start)
        record = schemaless_reader(buf, parsed, None)
        if buf.tell() != len(data):
            raise ValueError(f"the Avro record ends at byte {buf.tell()} of {len(data)}")
        return record

    def parse(data: bytes) -> Any:
        if len(data) > 5 and data[0] == 0:
            try:
                return read_exact(data, 5)
            except Exception:  # not framed after all: read it bare below
                pass
        return read_exact(data, 0)

    return parse
