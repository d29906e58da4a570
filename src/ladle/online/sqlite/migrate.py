"""Conversion of SQLite online tables written by earlier Ladle versions; nothing else uses it.

This module is the only place the old (format 1) bytes are still understood, and only to convert
them. Format 1 tables keyed rows by Feast's entity key serialization v3 and stored the *versioned*
row format; format 2 (:data:`~ladle.online.sqlite.sql.FORMAT`) uses the entity key and the stamped
row format every online store shares (:mod:`ladle.online.keys`, :mod:`ladle.online.codec.stamped`).

:func:`upgrade` runs each time :class:`~ladle.online.sqlite.store.SqliteOnlineStore` opens a
connection, before the connection serves anything. It adds the catalog's ``format`` column if it is
missing, then converts each table of an older format in **one** ``BEGIN IMMEDIATE`` transaction: the
rows are decoded, re-encoded into a new table, the old table is dropped and the new one takes its
name, and the catalog records the new schemas and format. Readers (WAL) keep seeing the old table
until that commit; another process converting at the same time waits for the write lock and then
finds the table done. Each old schema (fingerprint) keeps its own layout, so rows written before a
schema change remain rows of their own schema.

Format 1 in brief (little-endian): the key is ``u32 n``, ``n x (u32 2, u32 len, join-key name)``,
``n x (u32 value type, u32 len, value)``; a row is ``u8 1 | u32 fingerprint (BLAKE2b-32 of
"name:dtype;...") | null bitmap | fixed-width features | per variable feature: u32 len + payload``,
a list payload being ``u32 count | u8 flags | [validity bitmap] | elements`` (strings and bytes as
``count x u32`` lengths, then the data).
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from ladle.online.arrays import FIXED, TIMESTAMP_US, micros_to_datetime
from ladle.online.codec.history import fields_from_json, fingerprint
from ladle.online.codec.stamped import ViewLayout, encode, prepare
from ladle.online.keys import text_entity_keys
from ladle.online.sqlite.sql import CATALOG, FORMAT, Table, create_table_sql, quote, schemas_json
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP, DType, ValueType

_U32 = struct.Struct("<I")
_PAIR = struct.Struct("<II")
_LIST_HEAD = struct.Struct("<IB")
_CHUNK = 50_000


def upgrade(conn: sqlite3.Connection, now_us: int) -> None:
    """Bring the catalog and every table of an older format to the current one (a no-op when done)."""
    if not _has_format_column(conn):
        with _immediate(conn):
            if not _has_format_column(conn):
                conn.execute(f"ALTER TABLE {CATALOG} ADD COLUMN format INTEGER NOT NULL DEFAULT 1")
    for (name,) in conn.execute(f"SELECT tbl FROM {CATALOG} WHERE format < ?", (FORMAT,)).fetchall():
        with _immediate(conn):
            _convert(conn, name, now_us)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _has_format_column(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "format" for row in conn.execute(f"PRAGMA table_info({CATALOG})"))


def _convert(conn: sqlite3.Connection, name: str, now_us: int) -> None:
    """Convert one format-1 table (inside the caller's transaction; re-checked, another may have)."""
    row = conn.execute(f"SELECT view, schemas, format FROM {CATALOG} WHERE tbl = ?", (name,)).fetchone()
    if row is None or row[2] >= FORMAT:
        return
    view, schemas = row[0], [_OldRows(fields_from_json(f)) for f in json.loads(row[1]).values()]
    by_fingerprint = {old.fingerprint: old for old in schemas}
    target = Table(f"{name}:format{FORMAT}", {})  # two ':' never name a view's table
    conn.execute(f"DROP TABLE IF EXISTS {quote(target.name)}")
    conn.execute(create_table_sql(target.name))
    cursor = conn.execute(f"SELECT __key, __event_ts, __created_ts, __values FROM {quote(name)}")
    while rows := cursor.fetchmany(_CHUNK):
        groups: dict[int, list[tuple[bytes, int, int, bytes]]] = {}
        for rec in rows:
            blob = rec[3]
            fp = _U32.unpack_from(blob, 1)[0] if len(blob) >= 5 and blob[0] == 1 else -1
            groups.setdefault(fp, []).append(rec)
        for fp, members in groups.items():
            old = by_fingerprint.get(fp)
            if old is not None:  # rows no schema describes were unreadable already; they stay so
                conn.executemany(target.upsert, old.convert(view, members, now_us))
    conn.execute(f"DROP TABLE {quote(name)}")
    conn.execute(f"ALTER TABLE {quote(target.name)} RENAME TO {quote(name)}")
    layouts = [old.layout for old in schemas]
    conn.execute(f"UPDATE {CATALOG} SET schemas = ?, format = ? WHERE tbl = ?", (schemas_json(layouts), FORMAT, name))


def entity_keys(keys: Sequence[bytes]) -> list[bytes]:
    """The entity keys of Feast-serialized (v3) keys, in order."""
    parsed: list[tuple[tuple[str, ...], list[Any]]] = []
    # the join-key names part of a key is the same in (almost) every key: parsed once
    header: bytes | None = None
    names: tuple[str, ...] = ()
    start = 0
    for key in keys:
        if header is None or not key.startswith(header):
            names, start = _key_names(key)
            header = key[:start]
        parsed.append((names, _key_values(key, start, len(names))))
    out: list[bytes] = [b""] * len(keys)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, (key_names, _) in enumerate(parsed):
        groups.setdefault(key_names, []).append(i)
    for key_names, positions in groups.items():  # one group, unless join keys changed over time
        columns = {name: [parsed[i][1][k] for i in positions] for k, name in enumerate(key_names)}
        for i, text in zip(positions, text_entity_keys(key_names, columns), strict=True):
            out[i] = text
    return out


def _key_names(key: bytes) -> tuple[tuple[str, ...], int]:
    """The join-key names of a v3 key and where its values start."""
    (count,) = _U32.unpack_from(key, 0)
    pos, names = 4, []
    for _ in range(count):
        _, length = _PAIR.unpack_from(key, pos)
        names.append(key[pos + 8 : pos + 8 + length].decode())
        pos += 8 + length
    return tuple(names), pos


def _key_values(key: bytes, pos: int, count: int) -> list[Any]:
    values: list[Any] = []
    for _ in range(count):
        vt, length = _PAIR.unpack_from(key, pos)
        raw = key[pos + 8 : pos + 8 + length]
        pos += 8 + length
        if vt == ValueType.STRING:
            values.append(raw.decode())
        elif vt == ValueType.BYTES:
            values.append(raw)
        else:
            values.append(int.from_bytes(raw, "little", signed=True))
    return values


class _OldRows:
    """Decoder of the versioned rows of one old schema, and their conversion to stamped rows."""

    def __init__(self, fields: Sequence[tuple[str, DType]]) -> None:
        self.fields = tuple(fields)
        self.layout = ViewLayout(self.fields)
        self.fingerprint = fingerprint(";".join(f"{n}:{d.name}" for n, d in self.fields).encode())
        fixed = [i for i, (_, d) in enumerate(self.fields) if d.value_type in FIXED]
        self._var_count = len(self.fields) - len(fixed)
        codes = "".join(FIXED[self.fields[i][1].value_type][0] for i in fixed)
        self._head = struct.Struct(f"<BI{(len(self.fields) + 7) // 8}s{codes}")
        # where feature i sits in ``head + var`` (fixed slots follow the 3 header items), and its decoder
        var_at = iter(range(3 + len(fixed), 3 + len(self.fields)))
        fixed_at = iter(range(3, 3 + len(fixed)))
        self._slots = [(next(fixed_at) if d.value_type in FIXED else next(var_at), _decoder(d)) for _, d in self.fields]

    def decode(self, blob: bytes) -> list[Any] | None:
        """Every feature of one row in schema order (``None`` for a malformed row)."""
        try:
            head = self._head.unpack_from(blob, 0)
            pos, var = self._head.size, []
            for _ in range(self._var_count):
                (length,) = _U32.unpack_from(blob, pos)
                var.append(blob[pos + 4 : pos + 4 + length])
                pos += 4 + length
        except struct.error:
            return None
        nulls = int.from_bytes(head[2], "little")
        items = (*head, *var)
        if not nulls:
            return [items[at] if post is None else post(items[at]) for at, post in self._slots]
        return [
            None if nulls >> i & 1 else items[at] if post is None else post(items[at])
            for i, (at, post) in enumerate(self._slots)
        ]

    def convert(self, view: str, rows: list[tuple[bytes, int, int, bytes]], now_us: int) -> list[tuple[Any, ...]]:
        """Upsert parameters (key, event, created, stamped row) of old rows of this schema."""
        decoded = [(rec, self.decode(rec[3])) for rec in rows]
        kept = [(rec, values) for rec, values in decoded if values is not None]
        columns: dict[str, Any] = {
            name: pa.array([values[i] for _, values in kept], dtype.arrow)
            for i, (name, dtype) in enumerate(self.fields)
        }
        columns[EVENT_TIMESTAMP] = pa.array(np.array([rec[1] for rec, _ in kept], np.int64)).cast(TIMESTAMP_US)
        columns[CREATED_TIMESTAMP] = pa.array(np.array([rec[2] for rec, _ in kept], np.int64)).cast(TIMESTAMP_US)
        table = pa.table(columns)
        blobs = encode(prepare(self.layout, view, table, now_us), 0, table.num_rows).to_pylist()
        keys = entity_keys([rec[0] for rec, _ in kept])
        params = [(key, rec[1], rec[2], blob) for key, (rec, _), blob in zip(keys, kept, blobs, strict=True)]
        params.sort(key=itemgetter(0))  # stable: appends B-tree pages in order; equal keys keep their order
        return params


def _decoder(dtype: DType) -> Callable[[Any], Any] | None:
    """The Python value of a raw slot (a number or bytes) of this dtype; ``None``: as it is."""
    element = dtype.element
    if element is not None:
        return lambda raw: _list(raw, element)
    if dtype.value_type == ValueType.STRING:
        return bytes.decode
    if dtype.value_type == ValueType.UNIX_TIMESTAMP:
        return micros_to_datetime
    return None


def _list(blob: bytes, element: DType) -> list[Any]:
    count, flags = _LIST_HEAD.unpack_from(blob, 0)
    pos = _LIST_HEAD.size
    valid: list[bool] | None = None
    if flags & 1:
        size = (count + 7) // 8
        bits = int.from_bytes(blob[pos : pos + size], "little")
        valid = [bool(bits >> i & 1) for i in range(count)]
        pos += size
    vt = element.value_type
    if vt in FIXED:
        out: list[Any] = list(struct.unpack_from(f"<{count}{FIXED[vt][0]}", blob, pos))
        if vt == ValueType.UNIX_TIMESTAMP:
            out = [micros_to_datetime(v) for v in out]
    else:
        out = []
        pos += 4 * count
        for length in struct.unpack_from(f"<{count}I", blob, pos - 4 * count):
            out.append(blob[pos : pos + length])
            pos += length
        if vt == ValueType.STRING:
            out = [b.decode() for b in out]
    return out if valid is None else [v if ok else None for v, ok in zip(out, valid, strict=True)]
