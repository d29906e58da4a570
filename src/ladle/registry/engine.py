"""Connections to the registry database: engine setup, transactions, driver-error translation.

SQLite writers use ``BEGIN IMMEDIATE`` (the write lock is taken at the start, so the version check
and the writes cannot interleave with another writer); readers use a plain deferred ``BEGIN`` and,
thanks to WAL mode, are never blocked by a writer. PostgreSQL uses READ COMMITTED with a
conditional ``UPDATE`` of the project's version row as the concurrency guard.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from ladle.config import RegistryConfig
from ladle.errors import BackendUnavailableError, MissingExtraError, RegistryError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Execution option that marks a connection as a writer (``BEGIN IMMEDIATE`` on SQLite).
_WRITE = "ladle_write"


def _json(value: Any) -> str:
    # Sorted keys keep stored specs stable and diffable in the database itself.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def describe_url(url: sa.URL) -> str:
    """Where the database is, without the password (for error messages)."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    user = f"{url.username}@" if url.username else ""
    return f"PostgreSQL {user}{host}{port}/{url.database}"


def create_registry_engine(config: RegistryConfig, repo_path: Path) -> Engine:
    """An engine for the registry URL, with pre-ping and the per-dialect transaction setup."""
    url = sa.make_url(config.url(repo_path))
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": _json}
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30.0, "check_same_thread": False}
    elif backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "ladle-registry"}
    kwargs.update(config.sqlalchemy_config_kwargs)
    try:
        engine = sa.create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        raise MissingExtraError("PostgreSQL registry", "postgres", exc.name or "psycopg") from exc
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise RegistryError(f"registry path {describe_url(url)!r} is not a usable database URL: {exc}") from exc
    if backend == "sqlite":
        _sqlite_transactions(engine)
    elif backend == "postgresql":
        _ensure_postgres_database(engine, kwargs["connect_args"])
    return engine


def _ensure_postgres_database(engine: Engine, connect_args: dict[str, Any]) -> None:
    """Create the registry's database when it does not exist yet, as SQLite creates its file.

    The role needs CREATEDB; without it the error says how to create the database by hand.
    """
    url = engine.url
    try:
        with engine.connect():
            return
    except OperationalError as exc:
        # Every other connection problem is reported, translated, on first use.
        if f'database "{url.database}" does not exist' not in str(exc.orig) or not url.database:
            return
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", connect_args=connect_args)
    name = url.database.replace('"', '""')
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        log.warning("created the PostgreSQL database %s for the registry", describe_url(url))
    except DBAPIError as exc:
        if "already exists" in str(exc.orig):  # another process created it first
            return
        user = f" -U {url.username}" if url.username else ""
        raise RegistryError(
            f"registry database {describe_url(url)} does not exist and this role cannot create it "
            f"({_first_line(exc.orig)}): create it with 'createdb -h {url.host or 'localhost'} "
            f"-p {url.port or 5432}{user} {url.database}' as a role that may"
        ) from exc
    finally:
        admin.dispose()


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot do BEGIN IMMEDIATE; take it over.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def _switch_to_wal(cursor: Any, attempts: int = 100) -> None:
    # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is locked"
    # at once (no busy handler) when another process is switching it at the same moment: retry.
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class Database:
    """The engine plus error translation: every public call raises only Ladle errors."""

    def __init__(self, config: RegistryConfig, repo_path: Path) -> None:
        self.engine = create_registry_engine(config, repo_path)
        self.where = describe_url(self.engine.url)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (committed on success, rolled back on any error)."""
        with self.translate(), self.engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read transaction (a consistent view on both databases)."""
        with self.translate(), self.engine.connect() as conn, conn.begin():
            yield conn

    def read_retrying(self, fn: Callable[[Connection], T]) -> T:
        """Run a read; retry once on a dropped connection (the pool then reconnects)."""
        try:
            with self.read() as conn:
                return fn(conn)
        except BackendUnavailableError as exc:
            log.info("registry read failed (%s); retrying once", exc)
        with self.read() as conn:
            return fn(conn)

    @contextmanager
    def translate(self) -> Iterator[None]:
        """Turn driver errors into :class:`BackendUnavailableError` / :class:`RegistryError`."""
        try:
            yield
        except IntegrityError:
            raise  # callers decide what a constraint violation means (usually a conflict)
        except (OperationalError, InterfaceError) as exc:
            raise BackendUnavailableError(
                f"registry database ({self.where}) is unavailable: {_first_line(exc.orig)}"
            ) from exc
        except DBAPIError as exc:
            raise RegistryError(f"registry database ({self.where}) failed: {_first_line(exc.orig)}") from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else "unknown error"
    return text.splitlines()[0] if text else type(exc).__name__
