"""Writing to source tables (push to offline, ``ladle ingest`` windows) and creating them.

Rows go in as multi-row ``INSERT``s of ``upload_batch_rows`` rows (pymysql's ``executemany``).
On MySQL/MariaDB (InnoDB) an append, or a window's DELETE and INSERT, is one transaction: a
failure leaves the table as it was. Doris and StarRocks commit each statement on its own (docs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.errors import DataSourceError, SchemaMismatchError
from ladle.offline.doris import sql
from ladle.offline.doris.config import DorisOfflineStoreConfig
from ladle.offline.doris.connection import connect, translated
from ladle.offline.doris.values import ddl_type, parameter_rows
from ladle.types import ValueType


def table_columns(block: DorisOfflineStoreConfig, src: sql.Source) -> dict[str, str]:
    """Column name → server type (``COLUMN_TYPE``, with its collation for text) of a table source."""
    if not src.relation.is_table:
        raise DataSourceError(f"source '{src.relation.label}' is a query, not a table")
    con = connect(block)
    try:
        with translated(block, f"reading the columns of {src.relation}"), con.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (src.relation.database, src.relation.table),
            )
            rows = cur.fetchall()
    finally:
        con.close()
    if not rows:
        raise DataSourceError(f"source '{src.relation.label}': table {src.relation} does not exist")
    return {str(n): f"{t} COLLATE {c}" if c else str(t) for n, t, c in rows}


def key_column_types(block: DorisOfflineStoreConfig, src: sql.Source, view: FeatureView) -> dict[str, str]:
    """Work-table column types for a view's join keys (view names → canonical type).

    On MySQL/MariaDB a string key takes the source column's exact type and collation: a join
    between columns of different collations is an error there, and cannot use the index.
    """
    declared = {f.name: f.dtype for f in view.entity_columns}
    server: dict[str, str] = {}
    if block.type == "mysql" and src.relation.is_table:
        server = table_columns(block, src)
    out: dict[str, str] = {}
    for key in view.join_keys:
        dtype = declared.get(key)
        if dtype is not None and dtype.value_type in (ValueType.INT32, ValueType.INT64):
            out[key] = "BIGINT"
            continue
        column = src.mapping.get(key, key)
        found = server.get(column, "")
        binary = dtype is not None and dtype.value_type == ValueType.BYTES
        if found.lower().startswith(("varchar", "char", "varbinary", "binary")):
            out[key] = found
        elif binary:
            out[key] = "VARBINARY(255)" if block.type == "mysql" else "VARCHAR(65533)"
        else:
            out[key] = "VARCHAR(65533)" if block.type != "mysql" else "VARCHAR(255)"
    return out


def _check_rows(src: sql.Source, rows: pa.Table, columns: dict[str, str]) -> None:
    ts = src.mapping.get(src.timestamp, src.timestamp)
    label = src.relation.label
    if ts not in rows.column_names:
        raise SchemaMismatchError(f"rows for source '{label}' have no timestamp column '{ts}'")
    unknown = [c for c in rows.column_names if c not in columns]
    if unknown:
        raise SchemaMismatchError(f"rows for source '{label}' have columns {unknown} that table {src.relation} lacks")


def insert_rows(
    block: DorisOfflineStoreConfig, src: sql.Source, rows: pa.Table, replace: tuple[int, int] | None
) -> int:
    """Insert ``rows`` into the table (after deleting ``[start, end)`` when ``replace`` is given)."""
    if not src.relation.is_table:
        raise DataSourceError(f"source '{src.relation.label}' is a query: rows can only be written to a table")
    columns = table_columns(block, src)
    _check_rows(src, rows, columns)
    name = sql.qualified(src.relation.database, src.relation.table)
    insert = sql.insert_sql(name, rows.column_names, block.type)
    transactional = block.type == "mysql"
    con = connect(block)
    try:
        with translated(block, f"writing to {src.relation}"):
            if transactional:
                con.begin()
            try:
                with con.cursor() as cur:
                    if replace is not None:
                        cur.execute(sql.delete_window_sql(src, block.type, *replace))
                    step = block.upload_batch_rows
                    for offset in range(0, rows.num_rows, step):
                        cur.executemany(insert, parameter_rows(rows.slice(offset, step)))
                if transactional:
                    con.commit()
            except BaseException:
                if transactional:
                    con.rollback()
                raise
    finally:
        con.close()
    return int(rows.num_rows)


def create_table(
    block: DorisOfflineStoreConfig,
    database: str,
    table: str,
    schema: pa.Schema,
    keys: Sequence[str],
    timestamp: str,
    created: str = "",
    collation: str = "utf8mb4_bin",
) -> list[str]:
    """Create a source table for ``schema`` as a deployment would, and return the statements run.

    MySQL/MariaDB: InnoDB with an index on (keys, event time[, created]), which the point-in-time
    lookups and ``pull_latest`` use; strings in ``collation`` (``utf8mb4_bin``: case-sensitive; on
    MariaDB ``utf8mb4_nopad_bin`` also tells trailing spaces apart). Doris and
    StarRocks: a duplicate-key table sorted by (keys, event time), hashed on the keys.
    """
    name = sql.qualified(database, table)
    key_set = set(keys)
    defs = []
    for f in schema:
        kind = ddl_type(f.type, key=f.name in key_set)
        if block.type != "mysql" and kind in ("JSON", "LONGBLOB"):
            kind = "TEXT"  # Doris/StarRocks: ARRAY<...> is the better type for lists; JSON text reads the same
        if block.type == "mysql" and kind.startswith("VARCHAR"):
            kind += f" COLLATE {collation}"
        defs.append((f.name, kind))
    statements = []
    if block.type == "mysql":
        statements.append(sql.create_table_sql(name, defs, block.type))
        index = [*keys, timestamp, *([created] if created else [])]
        cols = ", ".join(sql.ident(c) for c in index)
        statements.append(sql.render(f"CREATE INDEX {sql.ident('__ladle_pit')} ON {name} ({cols})", block.type))
    else:
        sort = [*keys, timestamp]
        ordered = [d for c in sort for d in defs if d[0] == c] + [d for d in defs if d[0] not in sort]
        ddl = sql.render(f"CREATE TABLE {name} ({', '.join(f'{sql.ident(c)} {t}' for c, t in ordered)})", block.type)
        quoted = ", ".join(f"`{c}`" for c in sort)
        hashed = ", ".join(f"`{c}`" for c in keys) or f"`{timestamp}`"
        statements.append(f"{ddl} DUPLICATE KEY({quoted}) DISTRIBUTED BY HASH({hashed}) BUCKETS AUTO")
    con = connect(block, database="")
    try:
        with translated(block, f"creating {database}.{table}"), con.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        con.close()
    return statements


def erase_rows(block: DorisOfflineStoreConfig, src: sql.Source, keys: Mapping[str, object], dry_run: bool) -> int:
    """DELETE (or count) the rows of a table source whose columns equal ``keys``; one statement each."""
    if not src.relation.is_table:
        raise DataSourceError(f"source '{src.relation.label}' is a query: rows can only be erased from a table")
    try:
        columns = table_columns(block, src)
    except DataSourceError:
        return 0  # the table does not exist (yet): nothing to erase
    if not set(keys) <= set(columns):
        return 0
    # Backtick identifiers and %s parameters: the same text on MySQL, Doris and StarRocks (autocommit on).
    name = f"{_tick(src.relation.database)}.{_tick(src.relation.table)}"
    where = " AND ".join(f"{_tick(k)} = %s" for k in keys)
    params = tuple(keys.values())
    con = connect(block)
    try:
        with translated(block, f"erasing rows of {src.relation}"), con.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {name} WHERE {where}", params)
            row = cur.fetchone()
            found = int(row[0]) if row else 0
            if found and not dry_run:
                cur.execute(f"DELETE FROM {name} WHERE {where}", params)
    finally:
        con.close()
    return found


def _tick(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
