"""Message formats of a Kafka source: ``JsonFormat`` (Feast's Spark-DDL ``schema_json``) and
``AvroFormat`` (an Avro record schema), each declaring the fields and dtypes of its messages.

Formats are serialized as specs with a ``format`` key; :func:`format_from_spec` dispatches on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ladle.errors import DefinitionError
from ladle.types import Bool, DType, Float32, Float64, Int32, Int64, String, UnixTimestamp

#: Spark DDL type names (Feast's ``JsonFormat.schema_json``) and Avro primitive types, as dtypes.
_DDL_TYPES: dict[str, DType] = {
    "string": String,
    "varchar": String,
    "int": Int32,
    "integer": Int32,
    "bigint": Int64,
    "long": Int64,
    "float": Float32,
    "real": Float32,
    "double": Float64,
    "boolean": Bool,
    "bool": Bool,
    "timestamp": UnixTimestamp,
}
_AVRO_TYPES: dict[str, DType] = {
    "string": String,
    "int": Int32,
    "long": Int64,
    "float": Float32,
    "double": Float64,
    "boolean": Bool,
}
_DDL_FIELD = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s+([A-Za-z]+)\s*$")


class StreamFormat:
    """How the messages of a topic are encoded. See :class:`JsonFormat` and :class:`AvroFormat`."""

    format_name = ""

    def __init__(self, schema_json: str = "") -> None:
        if not isinstance(schema_json, str):
            raise DefinitionError(f"{self.format_name} format: schema_json must be a string")
        self.schema_json = schema_json

    def fields(self) -> list[tuple[str, DType]]:
        """The declared fields and their dtypes (empty when no schema is declared)."""
        raise NotImplementedError

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"format": self.format_name, "schema_json": self.schema_json}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StreamFormat) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.format_name, self.schema_json))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class JsonFormat(StreamFormat):
    """JSON objects, one per message. ``schema_json`` is optional, in Feast's form: a Spark DDL
    string such as ``"commodity_code string, event_timestamp timestamp, price double"``.

    With a schema, a message whose declared field holds a value of another type is dead-lettered;
    without one, the fields are checked against the view's own columns.
    """

    format_name = "json"

    def __init__(self, schema_json: str = "") -> None:
        super().__init__(schema_json)
        self._fields = self._parse()

    def _parse(self) -> list[tuple[str, DType]]:
        out: list[tuple[str, DType]] = []
        if not self.schema_json.strip():
            return out
        for part in self.schema_json.split(","):
            match = _DDL_FIELD.match(part)
            if match is None or match.group(2).lower() not in _DDL_TYPES:
                raise DefinitionError(
                    f"json format: cannot read {part.strip()!r} in schema_json; write 'name type, ...' "
                    f"with types {sorted(_DDL_TYPES)}"
                )
            out.append((match.group(1), _DDL_TYPES[match.group(2).lower()]))
        names = [n for n, _ in out]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"json format: fields {dupes} appear twice in schema_json")
        return out

    def fields(self) -> list[tuple[str, DType]]:
        """The declared fields and their dtypes (empty when no schema is declared)."""
        return list(self._fields)


class AvroFormat(StreamFormat):
    """Avro records (binary, schemaless, or in Confluent's framing), described by ``schema_json``:
    an Avro record schema in JSON. ``timestamp-millis``/``timestamp-micros`` logical types and
    unions with ``null`` are understood."""

    format_name = "avro"

    def __init__(self, schema_json: str) -> None:
        super().__init__(schema_json)
        self._fields = self._parse()

    def _parse(self) -> list[tuple[str, DType]]:
        try:
            schema = json.loads(self.schema_json)
        except ValueError as exc:
            raise DefinitionError(f"avro format: schema_json is not JSON: {exc}") from None
        if not isinstance(schema, dict) or schema.get("type") != "record" or not isinstance(schema.get("fields"), list):
            raise DefinitionError("avro format: schema_json must be an Avro record schema with a 'fields' list")
        out: list[tuple[str, DType]] = []
        for field in schema["fields"]:
            name = field.get("name") if isinstance(field, dict) else None
            if not isinstance(name, str):
                raise DefinitionError(f"avro format: field {field!r} has no name")
            out.append((name, _avro_dtype(name, field.get("type"))))
        names = [n for n, _ in out]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"avro format: fields {dupes} appear twice in schema_json")
        return out

    def fields(self) -> list[tuple[str, DType]]:
        """The declared fields and their dtypes."""
        return list(self._fields)


def _avro_dtype(name: str, avro_type: Any) -> DType:
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise DefinitionError(f"avro format: field '{name}' is a union of {avro_type}; only [null, T] is supported")
        return _avro_dtype(name, branches[0])
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros") and avro_type.get("type") == "long":
            return UnixTimestamp
        return _avro_dtype(name, avro_type.get("type"))
    if isinstance(avro_type, str) and avro_type in _AVRO_TYPES:
        return _AVRO_TYPES[avro_type]
    raise DefinitionError(f"avro format: field '{name}' has type {avro_type!r}, which Ladle cannot store")


def format_from_spec(spec: Mapping[str, Any]) -> StreamFormat:
    """Rebuild a message format from :meth:`StreamFormat.to_spec` output."""
    kinds: dict[str, type[StreamFormat]] = {"json": JsonFormat, "avro": AvroFormat}
    try:
        cls = kinds[spec["format"]]
    except KeyError:
        raise DefinitionError(f"unknown message format {spec.get('format')!r}; use JsonFormat or AvroFormat") from None
    return cls(spec.get("schema_json", ""))
