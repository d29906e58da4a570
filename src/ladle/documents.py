"""Values of the document dtypes ``Map``, ``Json`` and ``Struct(...)``: JSON text inside, objects outside.

Feast's ``Map`` holds values of any type under string keys, ``Json`` any JSON document and
``Struct`` an object with typed fields. Ladle moves all three as JSON text (a string column: the
online row formats store it like a ``String``), written compactly; the SDK and the servers give
them back as Python objects / JSON values. A source may hold them as JSON text (VARCHAR) or as
Parquet STRUCT / MAP / LIST columns, which are turned into JSON text when read.
"""

from __future__ import annotations

import base64
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from ladle.errors import SchemaMismatchError
from ladle.types import DType, ValueType

_OBJECT_TYPES = (ValueType.MAP, ValueType.STRUCT)


def _plain(value: Any) -> Any:
    """A JSON-able form of one value read from an Arrow nested column (maps come as key/value pairs)."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {str(k): _plain(v) for k, v in value}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Decimal):
        return float(value)
    return value


def dumps(value: Any) -> str:
    """The JSON text Ladle stores for one document value (compact; keys in their given order)."""
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check(name: str, dtype: DType, value: Any) -> None:
    if dtype.value_type in _OBJECT_TYPES and not isinstance(value, dict):
        kind = type(value).__name__
        raise SchemaMismatchError(f"column '{name}' ({dtype}) holds a {kind}, not an object: {dumps(value)[:80]}")


def to_json_column(name: str, column: pa.Array | pa.ChunkedArray, dtype: DType) -> pa.Array:
    """The values of ``column`` as JSON text for the document dtype ``dtype`` (nulls stay null).

    Text columns must hold valid JSON (objects for ``Map`` and ``Struct``); nested Arrow columns
    (struct, map, list) are serialized. Raises :class:`SchemaMismatchError` naming the column.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    out: list[str | None] = []
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        for text in array.to_pylist():
            if text is None:
                out.append(None)
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise SchemaMismatchError(f"column '{name}' ({dtype}) holds text that is not JSON: {exc}") from None
            _check(name, dtype, value)
            out.append(text)
        return pa.array(out, pa.string())
    if pa.types.is_nested(array.type) or pa.types.is_map(array.type):
        for value in array.to_pylist():
            if value is None:
                out.append(None)
                continue
            plain = _plain(value)
            _check(name, dtype, plain)
            out.append(dumps(plain))
        return pa.array(out, pa.string())
    raise SchemaMismatchError(f"column '{name}' ({array.type}) cannot be stored as {dtype}: expected JSON text")


def loads(values: list[Any]) -> list[Any]:
    """Python objects of stored JSON texts, in place (``None`` stays ``None``)."""
    for i, text in enumerate(values):
        if text is not None:
            values[i] = json.loads(text)
    return values
