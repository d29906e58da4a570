"""Between Arrow and the MySQL protocol: result columns to Arrow, Arrow rows to statement parameters.

* Server types read as: ``TINYINT(1)``/``BOOLEAN`` → bool, other integers by width, ``FLOAT`` →
  float32, ``DOUBLE``/``DECIMAL`` → float64, ``DATETIME``/``TIMESTAMP`` → ``timestamp[us, UTC]``
  (DATETIME holds UTC wall-clock times; the session time zone is UTC), text → string, binary → bytes.
* Array features (``Array(String)``, ...) are stored as JSON arrays (MySQL/MariaDB ``JSON``) or
  ``ARRAY`` columns (Doris, StarRocks), which the protocol sends as JSON text: read with
  ``json.loads`` into the declared list type. JSON has no instants or bytes: elements of
  ``Array(UnixTimestamp)`` are UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` strings, of ``Array(Bytes)``
  base64 strings.
* Written values: timestamps as UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` (any unit or zone in), lists as
  JSON text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ladle.errors import SchemaMismatchError
from ladle.types import DType, ValueType

UTC_US = pa.timestamp("us", tz="UTC")
_BINARY_CHARSET = 63

#: MySQL protocol field types (pymysql.constants.FIELD_TYPE) → Arrow.
_FIELD_TYPES: dict[int, pa.DataType] = {
    1: pa.int8(),
    2: pa.int16(),
    3: pa.int32(),
    8: pa.int64(),
    9: pa.int32(),
    13: pa.int16(),  # YEAR
    16: pa.int64(),  # BIT
    4: pa.float32(),
    5: pa.float64(),
    0: pa.float64(),
    246: pa.float64(),
    7: UTC_US,
    12: UTC_US,
    10: pa.date32(),
}
_TEXT_TYPES = {15, 245, 249, 250, 251, 252, 253, 254}


def arrow_type_of(type_code: int, length: int | None, charset: int | None) -> pa.DataType:
    """Arrow type of a result column (``TINYINT(1)`` is a bool, binary charsets are bytes)."""
    if type_code == 1 and length == 1:
        return pa.bool_()
    if type_code in _TEXT_TYPES:
        return pa.binary() if charset == _BINARY_CHARSET and type_code != 245 else pa.string()
    return _FIELD_TYPES.get(type_code, pa.string())


def schema_of(cursor: Any) -> pa.Schema:
    """The Arrow schema of a pymysql cursor's result (after ``execute``)."""
    fields = getattr(getattr(cursor, "_result", None), "fields", None) or []
    charsets = [getattr(f, "charsetnr", None) for f in fields] or [None] * len(cursor.description)
    return pa.schema(
        pa.field(d[0], arrow_type_of(d[1], d[3], c)) for d, c in zip(cursor.description, charsets, strict=True)
    )


def to_arrow(values: Sequence[Any], dtype: DType | None, arrow_type: pa.DataType) -> pa.Array:
    """One result column as Arrow: the view's dtype if given, else the server's type."""
    target = dtype.arrow if dtype is not None else arrow_type
    if pa.types.is_timestamp(target):
        return pa.array(values, pa.timestamp("us")).cast(UTC_US)
    if pa.types.is_list(target):
        decode = _ELEMENT_READERS.get(_kind(target.value_type))
        lists = [None if v is None else json.loads(v) if isinstance(v, (str, bytes)) else v for v in values]
        values = lists if decode is None else [None if v is None else [decode(x) for x in v] for v in lists]
    elif pa.types.is_boolean(target):
        values = [None if v is None else bool(v) for v in values]
    elif dtype is not None and dtype.value_type in (ValueType.FLOAT, ValueType.DOUBLE):
        values = [None if v is None else float(v) for v in values]
    elif pa.types.is_string(target):
        values = [v.decode() if isinstance(v, bytes) else v for v in values]
    return pa.array(values, target)


def _kind(element: pa.DataType) -> str:
    if pa.types.is_timestamp(element):
        return "timestamp"
    if pa.types.is_binary(element) or pa.types.is_large_binary(element):
        return "binary"
    return ""


def _stamp_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    utc = value.astimezone(UTC) if value.tzinfo is not None else value
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f")


def _stamp_value(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


_ELEMENT_WRITERS: dict[str, Callable[[Any], Any]] = {
    "timestamp": _stamp_text,
    "binary": lambda v: None if v is None else base64.b64encode(v).decode(),
}
_ELEMENT_READERS: dict[str, Callable[[Any], Any]] = {
    "timestamp": _stamp_value,
    "binary": lambda v: None if v is None else base64.b64decode(v),
}


def _column_values(column: pa.ChunkedArray) -> list[Any]:
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        utc = column.cast(UTC_US, safe=False) if pa.types.is_timestamp(kind) else column.cast(pa.timestamp("us"))
        text = pc.strftime(utc, format="%Y-%m-%d %H:%M:%S.%f", locale="C") if utc.null_count < len(utc) else None
        if text is None:
            return [None] * len(column)
        # %f gives nanoseconds on some Arrow versions: keep microseconds only
        return [None if v is None else v[:26] for v in text.to_pylist()]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        encode = _ELEMENT_WRITERS.get(_kind(kind.value_type))
        lists = column.to_pylist()
        if encode is not None:
            lists = [None if v is None else [encode(x) for x in v] for v in lists]
        return [None if v is None else json.dumps(v) for v in lists]
    if pa.types.is_boolean(kind):
        return [None if v is None else int(v) for v in column.to_pylist()]
    values: list[Any] = column.to_pylist()
    return values


def parameter_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """The rows of ``table`` as statement parameters (timestamps as UTC text, lists as JSON)."""
    columns = [_column_values(table.column(i)) for i in range(table.num_columns)]
    return list(zip(*columns, strict=True)) if columns else []


def ddl_type(arrow_type: pa.DataType, *, key: bool = False) -> str:
    """Canonical column type for an Arrow type (MySQL flavour: JSON for lists; strings as keys are
    ``VARCHAR(191)`` (three fit in an InnoDB index), otherwise ``TEXT``)."""
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "TIMESTAMP(6)"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_integer(arrow_type):
        return {8: "SMALLINT", 16: "SMALLINT", 32: "INT"}.get(arrow_type.bit_width, "BIGINT")
    if pa.types.is_float32(arrow_type) or pa.types.is_float16(arrow_type):
        return "FLOAT"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "DOUBLE"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "VARCHAR(191)" if key else "TEXT"  # 191 x 4 bytes: three keys fit an index
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "VARBINARY(255)" if key else "LONGBLOB"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "JSON"
    raise SchemaMismatchError(f"no column type for Arrow type {arrow_type}")
