"""The MySQL-protocol offline store on the real MariaDB server (``pytest -m doris``).

Each call of :func:`make_doris` loads the test's tables into a fresh database ``ladle_conf_<random>``
(with the index on (join keys, event time[, created]) a real deployment has; string columns
``utf8mb4_nopad_bin``, so keys compare exactly) and opens the store with ``type: mysql``, the dialect
MariaDB speaks. The database is dropped in the cleanup. MariaDB unreachable: skipped with a loud
reason, a failure under ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from ladle import FileSource
from ladle.definitions import DataSource
from ladle.offline.doris.config import DorisOfflineStoreConfig
from ladle.offline.doris.load import create_table
from ladle.offline.doris.values import parameter_rows

from .offline_backends import OfflineSetup, SourceTable, open_store

MARIADB_HOST = os.environ.get("LADLE_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("LADLE_MARIADB_PORT", "3306"))
KEY_COLUMNS = ("code", "market_id", "venue", "k0", "k1", "k2")  # the join keys of the suite's entities
#: Keys compare exactly: case-sensitive and without PAD SPACE ('A' and 'A ' differ), as on Parquet.
COLLATION = "utf8mb4_nopad_bin"

#: Cases the MySQL-protocol store cannot pass (test name → reason).
GAPS: dict[str, str] = {}


def mariadb_block(database: str) -> dict[str, object]:
    """The ``offline_store:`` block of the suite's MariaDB."""
    return {"type": "mysql", "host": MARIADB_HOST, "port": MARIADB_PORT, "user": "root", "database": database}


def admin(statement: str) -> None:
    """Run one statement as root (a short connection each time: a test may make many setups), or
    skip loudly (fail under CI=true) when the server is down."""
    import pymysql

    try:
        con = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", connect_timeout=3, autocommit=True)
    except pymysql.err.OperationalError as exc:
        reason = f"MARIADB NOT AVAILABLE at {MARIADB_HOST}:{MARIADB_PORT} ({exc.args[-1]}); run scripts/services.sh"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        with con.cursor() as cur:
            cur.execute(statement)
    finally:
        con.close()


def load_tables(block: DorisOfflineStoreConfig, tables: Mapping[str, SourceTable]) -> None:
    """Create and fill one table per source (timestamps as UTC DATETIME(6), lists as JSON)."""
    import pymysql

    for name, spec in tables.items():
        keys = [k for k in KEY_COLUMNS if k in spec.table.column_names]
        create_table(
            block,
            block.database,
            name,
            spec.table.schema,
            keys,
            spec.timestamp_field,
            spec.created_timestamp_column,
            collation=COLLATION,
        )
        if spec.table.num_rows == 0:
            continue
        con = pymysql.connect(host=block.host, port=block.effective_port(), user="root", database=block.database)
        try:
            with con.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                cols = ", ".join(f"`{c}`" for c in spec.table.column_names)
                marks = ", ".join(["%s"] * spec.table.num_columns)
                cur.executemany(f"INSERT INTO `{name}` ({cols}) VALUES ({marks})", parameter_rows(spec.table))
            con.commit()
        finally:
            con.close()


def make_doris(tables: Mapping[str, SourceTable], tmp_path: Path) -> OfflineSetup:
    """Each table in a fresh MariaDB database; FileSources named after the tables (table X of the database)."""
    database = f"ladle_conf_{uuid.uuid4().hex[:12]}"
    admin(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE {COLLATION}")

    def drop() -> None:
        admin(f"DROP DATABASE IF EXISTS `{database}`")

    repo = tmp_path / database
    repo.mkdir()
    try:
        block = DorisOfflineStoreConfig.model_validate(mariadb_block(database))
        load_tables(block, tables)
        sources: dict[str, DataSource] = {
            name: FileSource(
                name=name,
                path=f"data/{name}/",
                timestamp_field=spec.timestamp_field,
                created_timestamp_column=spec.created_timestamp_column,
            )
            for name, spec in tables.items()
        }
        store, config = open_store(repo, mariadb_block(database))
    except BaseException:
        drop()
        raise
    return OfflineSetup(store, sources, config, [drop])
