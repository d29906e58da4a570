"""Value types: Feast's ``ValueType`` numbers and the dtypes used in ``Field``.

A dtype knows its Feast ``ValueType`` (the wire enum), its Arrow type (how Ladle moves data)
and its name (how it is written in the registry)::

    from ladle import Field, Float64, Array, String
    Field(name="price", dtype=Float64)
    Field(name="tags", dtype=Array(String))
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa

from ladle.errors import DefinitionError


class ValueType(enum.IntEnum):
    """Feast's ``feast.types.ValueType.Enum``; the numbers are the protobuf tags."""

    UNKNOWN = -1
    INVALID = 0
    BYTES = 1
    STRING = 2
    INT32 = 3
    INT64 = 4
    DOUBLE = 5
    FLOAT = 6
    BOOL = 7
    UNIX_TIMESTAMP = 8
    BYTES_LIST = 11
    STRING_LIST = 12
    INT32_LIST = 13
    INT64_LIST = 14
    DOUBLE_LIST = 15
    FLOAT_LIST = 16
    BOOL_LIST = 17
    UNIX_TIMESTAMP_LIST = 18
    NULL = 19
    MAP = 20
    MAP_LIST = 21
    JSON = 32
    JSON_LIST = 33
    STRUCT = 34
    STRUCT_LIST = 35


class FieldStatus(enum.IntEnum):
    """Status of one value in an online response (Feast's ``FieldStatus``)."""

    INVALID = 0
    PRESENT = 1
    NULL_VALUE = 2
    NOT_FOUND = 3
    OUTSIDE_MAX_AGE = 4


@dataclass(frozen=True)
class DType:
    """A feature dtype: a name, the Feast value type and the Arrow type."""

    name: str
    value_type: ValueType
    element: DType | None = None
    #: The typed fields of a ``Struct(...)`` dtype (name, dtype), in declaration order.
    members: tuple[tuple[str, DType], ...] = ()

    @cached_property
    def arrow(self) -> pa.DataType:
        """The Arrow type values of this dtype are stored as.

        ``Map``, ``Json`` and ``Struct`` values move as their JSON text (a string column): a Feast
        map holds values of any type under string keys, which no single Arrow type can hold.
        """
        if self.element is not None:
            return pa.list_(self.element.arrow)
        return _ARROW[self.value_type]

    @property
    def is_list(self) -> bool:
        """True for ``Array(...)`` dtypes."""
        return self.element is not None

    @property
    def is_document(self) -> bool:
        """True for ``Map``, ``Json`` and ``Struct(...)``: values stored as JSON text, served as objects."""
        return self.value_type in DOCUMENT_TYPES

    def __repr__(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


_ARROW: dict[ValueType, pa.DataType] = {
    ValueType.BYTES: pa.binary(),
    ValueType.STRING: pa.string(),
    ValueType.INT32: pa.int32(),
    ValueType.INT64: pa.int64(),
    ValueType.DOUBLE: pa.float64(),
    ValueType.FLOAT: pa.float32(),
    ValueType.BOOL: pa.bool_(),
    ValueType.UNIX_TIMESTAMP: pa.timestamp("us", tz="UTC"),
    ValueType.MAP: pa.string(),
    ValueType.JSON: pa.string(),
    ValueType.STRUCT: pa.string(),
}
#: Value types whose values are documents (see :attr:`DType.is_document`).
DOCUMENT_TYPES = frozenset({ValueType.MAP, ValueType.JSON, ValueType.STRUCT})

Bytes = DType("Bytes", ValueType.BYTES)
String = DType("String", ValueType.STRING)
Int32 = DType("Int32", ValueType.INT32)
Int64 = DType("Int64", ValueType.INT64)
Float64 = DType("Float64", ValueType.DOUBLE)
Float32 = DType("Float32", ValueType.FLOAT)
Bool = DType("Bool", ValueType.BOOL)
UnixTimestamp = DType("UnixTimestamp", ValueType.UNIX_TIMESTAMP)
#: Feast's ``Map``: string keys to values of any type (a JSON object of JSON values in Ladle).
Map = DType("Map", ValueType.MAP)
#: Feast's ``Json``: any JSON document.
Json = DType("Json", ValueType.JSON)

PRIMITIVES: tuple[DType, ...] = (Bytes, String, Int32, Int64, Float64, Float32, Bool, UnixTimestamp)
_BY_NAME = {d.name: d for d in (*PRIMITIVES, Map, Json)}
_BY_VALUE_TYPE = {d.value_type: d for d in PRIMITIVES}
#: Value types allowed as join keys (Feast's entity key serialization allows these).
JOIN_KEY_TYPES = frozenset({ValueType.STRING, ValueType.INT32, ValueType.INT64, ValueType.BYTES})


def Array(element: DType) -> DType:
    """A list dtype, e.g. ``Array(Float64)``; nested arrays are not supported."""
    if element.is_list:
        raise DefinitionError(f"Array({element}) is not supported: arrays cannot be nested")
    if element.is_document:
        raise DefinitionError(f"Array({element}) is not supported: lists of Map, Json or Struct values")
    return DType(f"Array({element.name})", ValueType(element.value_type + 10), element)


def Struct(fields: Mapping[str, DType]) -> DType:
    """A struct dtype with typed fields, e.g. ``Struct({"name": String, "age": Int64})`` (Feast's ``Struct``)."""
    if not fields:
        raise DefinitionError("Struct(...) needs at least one field")
    for key, dtype in fields.items():
        if not isinstance(dtype, DType):
            raise DefinitionError(f"Struct field '{key}' has dtype {dtype!r}, not a dtype")
        if not key or any(c in key for c in ",:()"):
            raise DefinitionError(f"Struct field name {key!r} must be non-empty without ',', ':', '(' or ')'")
    members = tuple(fields.items())
    inner = ", ".join(f"{k}: {d.name}" for k, d in members)
    return DType(f"Struct({inner})", ValueType.STRUCT, members=members)


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def dtype_from_name(name: str) -> DType:
    """Parse a dtype name as written in the registry (``Float64``, ``Array(String)``, ``Struct(a: Int64)``)."""
    if name.startswith("Array(") and name.endswith(")"):
        return Array(dtype_from_name(name[6:-1]))
    if name.startswith("Struct(") and name.endswith(")"):
        fields: dict[str, DType] = {}
        for part in _split_top(name[7:-1]):
            key, sep, inner = part.partition(":")
            if not sep:
                raise DefinitionError(f"unknown dtype '{name}': Struct fields are written 'name: dtype'")
            fields[key.strip()] = dtype_from_name(inner.strip())
        return Struct(fields)
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise DefinitionError(f"unknown dtype '{name}'; known dtypes: {known}, Array(...), Struct(...)") from None


def dtype_from_value_type(value_type: ValueType) -> DType:
    """The dtype for a Feast ``ValueType`` (``STRUCT`` has no field types here: see :func:`Struct`)."""
    if value_type in _BY_VALUE_TYPE:
        return _BY_VALUE_TYPE[value_type]
    if value_type in (ValueType.MAP, ValueType.JSON):
        return Map if value_type == ValueType.MAP else Json
    if ValueType.BYTES_LIST <= value_type <= ValueType.UNIX_TIMESTAMP_LIST:
        return Array(_BY_VALUE_TYPE[ValueType(value_type - 10)])
    raise DefinitionError(f"value type {value_type.name} has no Ladle dtype")


def dtype_from_arrow(arrow_type: pa.DataType) -> DType:
    """The dtype that stores an Arrow type (used to check source schemas)."""
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return Array(dtype_from_arrow(arrow_type.value_type))
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return UnixTimestamp
    if pa.types.is_large_string(arrow_type) or pa.types.is_string(arrow_type):
        return String
    if pa.types.is_large_binary(arrow_type) or pa.types.is_binary(arrow_type):
        return Bytes
    if pa.types.is_dictionary(arrow_type):
        return dtype_from_arrow(arrow_type.value_type)
    if pa.types.is_struct(arrow_type) or pa.types.is_map(arrow_type):
        return Map
    for dtype in PRIMITIVES:
        if dtype.arrow.equals(arrow_type):
            return dtype
    if pa.types.is_integer(arrow_type):
        return Int64 if arrow_type.bit_width > 32 else Int32
    if pa.types.is_float16(arrow_type):
        return Float32
    raise DefinitionError(f"Arrow type {arrow_type} has no Ladle dtype")


def compatible(declared: DType, actual: DType) -> bool:
    """Whether source data of dtype ``actual`` can be stored in a field declared ``declared``.

    Widening is allowed (Int32 data in an Int64 field, Float32 in Float64, ints in floats);
    narrowing and kind changes are not.
    """
    if declared == actual:
        return True
    if declared.is_document:
        # JSON text (a string column), or a struct / map column turned into JSON text at read
        return actual.is_document or actual.value_type == ValueType.STRING
    if declared.is_list != actual.is_list:
        return False
    if declared.element is not None and actual.element is not None:
        return compatible(declared.element, actual.element)
    widen = {
        ValueType.INT64: {ValueType.INT32},
        ValueType.DOUBLE: {ValueType.FLOAT, ValueType.INT32, ValueType.INT64},
        ValueType.FLOAT: {ValueType.INT32},
    }
    return actual.value_type in widen.get(declared.value_type, set())


#: Canonical column names used between backends (offline output, online writes).
EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
