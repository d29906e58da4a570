"""Shared plumbing for the DuckDB transforms: connections, Arrow registration and input checks.

Every transform follows the same pattern: validate the input Arrow table, normalise its
timestamps to naive UTC microseconds (so the SQL never depends on the connection's
``TimeZone`` setting), register it under a unique name, run one SQL statement, and cast the
result's timestamps back to ``timestamp[us, UTC]``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.types as pat

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
NAIVE_TIMESTAMP = pa.timestamp("us")
SEQ_COLUMN = "__ladle_seq"

TypeCheck = Callable[[pa.DataType], bool]


def is_string(dtype: pa.DataType) -> bool:
    """True for Arrow string types (including large and view strings)."""
    return bool(pat.is_string(dtype) or pat.is_large_string(dtype) or pat.is_string_view(dtype))


def is_number(dtype: pa.DataType) -> bool:
    """True for integer, floating point and decimal Arrow types."""
    return bool(pat.is_integer(dtype) or pat.is_floating(dtype) or pat.is_decimal(dtype))


def is_number_or_null(dtype: pa.DataType) -> bool:
    """Numeric, or an all-null column (Arrow infers ``null`` for ``[None, None]``)."""
    return is_number(dtype) or pat.is_null(dtype)


def is_timestamp(dtype: pa.DataType) -> bool:
    """True for Arrow timestamps of any unit, with or without a time zone."""
    return bool(pat.is_timestamp(dtype))


def is_date(dtype: pa.DataType) -> bool:
    """True for Arrow ``date32``/``date64``."""
    return bool(pat.is_date(dtype))


def feature_schema(key: str, features: Sequence[str]) -> pa.Schema:
    """Output schema of a feature transform: the entity key, ``event_timestamp``, ``created`` and
    one float64 column per feature."""
    return pa.schema(
        [
            pa.field(key, pa.string()),
            pa.field("event_timestamp", UTC_TIMESTAMP),
            pa.field("created", UTC_TIMESTAMP),
            *(pa.field(name, pa.float64()) for name in features),
        ]
    )


def micros(delta: timedelta) -> int:
    """A timedelta as whole microseconds (the unit every SQL window here is written in)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def require_columns(table: pa.Table, spec: Mapping[str, TypeCheck], what: str) -> None:
    """Raise ``ValueError`` naming every missing or wrongly typed column of ``table``."""
    problems = []
    for name, check in spec.items():
        if name not in table.column_names:
            problems.append(f"missing column {name!r}")
        elif not check(table.schema.field(name).type):
            problems.append(f"column {name!r} has unsupported type {table.schema.field(name).type}")
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))


def prepare(
    table: pa.Table,
    columns: Sequence[str],
    timestamps: Sequence[str],
    floats: Sequence[str] = (),
) -> pa.Table:
    """Keep ``columns``, add an input-order column and normalise types for the SQL.

    Timestamps become naive UTC microseconds: a zone-aware value keeps its instant, and a
    naive value is taken to be UTC already (Feast's convention). ``floats`` are cast to float64.
    """
    out = table.select(list(columns))
    for name in timestamps:
        idx = out.column_names.index(name)
        out = out.set_column(idx, name, out.column(name).cast(NAIVE_TIMESTAMP))
    for name in floats:
        idx = out.column_names.index(name)
        out = out.set_column(idx, name, out.column(name).cast(pa.float64()))
    # Input order breaks ties between rows that share an entity and an instant.
    return out.append_column(SEQ_COLUMN, pa.array(np.arange(out.num_rows, dtype=np.int64)))


def finish(result: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a SQL result to ``schema`` (naive UTC timestamps become ``timestamp[us, UTC]``)."""
    return result.select(schema.names).cast(schema)


@contextlib.contextmanager
def connection(con: duckdb.DuckDBPyConnection | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield ``con``, or a private in-memory connection that is closed afterwards."""
    if con is not None:
        yield con
        return
    # A library call must not draw DuckDB's progress bar on the caller's terminal.
    own = duckdb.connect()
    own.execute("SET enable_progress_bar = false")
    try:
        yield own
    finally:
        own.close()


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, table: pa.Table, prefix: str) -> Iterator[str]:
    """Register ``table`` on ``con`` under a unique view name for the duration of the block.

    The random suffix keeps concurrent transforms on a shared connection from clobbering
    each other's inputs.
    """
    name = f"__ladle_{prefix}_{uuid.uuid4().hex}"
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def query(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run ``sql`` and return the whole result as one Arrow table."""
    return con.sql(sql).to_arrow_table()
