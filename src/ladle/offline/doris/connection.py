"""Connections over the MySQL protocol (pymysql), in UTC, with the server's errors made Ladle's.

Every connection sets ``time_zone = '+00:00'``: ``TIMESTAMP`` columns then read and compare as
UTC, and ``DATETIME`` columns are taken to hold UTC wall-clock times (naive = UTC).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ladle.errors import BackendError, BackendUnavailableError, ConfigError, DataSourceError, MissingExtraError
from ladle.offline.doris.config import DorisOfflineStoreConfig

if TYPE_CHECKING:
    import pymysql

#: Server error codes, by what they mean for the caller.
_AUTH = {1044, 1045, 1698}  # access denied (database, password, plugin)
_UNKNOWN_DATABASE = {1049}
_UNKNOWN_OBJECT = {1051, 1054, 1146, 1109}  # unknown table / column
_GONE = {2002, 2003, 2005, 2006, 2013, 2055}  # cannot connect, server gone, lost connection


def _pymysql() -> Any:
    try:
        import pymysql
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise MissingExtraError("doris", "doris", "pymysql") from exc
    return pymysql


def _first_line(exc: BaseException) -> str:
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) >= 2 else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: BaseException, block: DorisOfflineStoreConfig, what: str) -> Exception:
    """The Ladle error for a pymysql exception (one line: what failed, the server's words)."""
    pymysql = _pymysql()
    address = f"{block.host}:{block.effective_port()}"
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    message = _first_line(exc)
    if code in _AUTH:
        return ConfigError(f"offline_store ({block.type} at {address}): {message}; check user and password")
    if code in _UNKNOWN_DATABASE:
        return ConfigError(f"offline_store ({block.type} at {address}): {message}; check database")
    if code in _UNKNOWN_OBJECT:
        return DataSourceError(f"{what}: {message}")
    if code in _GONE or isinstance(exc, (OSError, pymysql.err.InterfaceError)):
        return BackendUnavailableError(f"{what}: the {block.type} server at {address} is unreachable: {message}")
    if isinstance(exc, pymysql.err.ProgrammingError | pymysql.err.DataError | pymysql.err.IntegrityError):
        return DataSourceError(f"{what}: {message}")
    return BackendError(f"{what} failed on {block.type} at {address}: {message}")


@contextmanager
def translated(block: DorisOfflineStoreConfig, what: str) -> Iterator[None]:
    """Raise pymysql's errors (and socket errors) as Ladle's."""
    pymysql = _pymysql()
    try:
        yield
    except (pymysql.err.Error, OSError) as exc:
        raise translate(exc, block, what) from exc


def _ssl_context(block: DorisOfflineStoreConfig) -> ssl.SSLContext | None:
    if not (block.tls or block.tls_ca or block.tls_cert):
        return None
    context = ssl.create_default_context(cafile=block.tls_ca or None)
    if block.tls_cert:
        context.load_cert_chain(block.tls_cert, block.tls_key or None)
    if not block.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(block: DorisOfflineStoreConfig, *, database: str | None = None) -> pymysql.Connection[Any]:
    """A new connection in UTC, autocommit on (writes open their own transactions)."""
    driver = _pymysql()
    conv = dict(driver.converters.conversions)
    for code in (driver.constants.FIELD_TYPE.DECIMAL, driver.constants.FIELD_TYPE.NEWDECIMAL):
        conv[code] = float  # DECIMAL features read as Float64
    with translated(block, f"connecting to {block.type}"):
        con: pymysql.Connection[Any] = driver.connect(
            host=block.host,
            port=block.effective_port(),
            user=block.user,
            password=block.password.get_secret_value(),
            database=database if database is not None else block.database,
            connect_timeout=block.connect_timeout_s,
            read_timeout=block.read_timeout_s,
            ssl=_ssl_context(block),
            charset="utf8mb4",
            autocommit=True,
            conv=conv,
            local_infile=False,
        )
        with con.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
    return con


def close_quietly(con: pymysql.Connection[Any]) -> None:
    """Close a connection that may be broken or in the middle of an unread result.

    Closing the connection (not an unbuffered cursor, which would first read the rest of the
    result) makes the server abort a query whose rows were not all read.
    """
    try:
        con.close()
    except (_pymysql().err.Error, OSError):
        pass  # already closed, or the server is gone: nothing left to release here
    # pymysql leaves an unbuffered result "active" when the socket broke under it, and its __del__
    # would then read from the closed socket; nothing is left to read.
    result = getattr(con, "_result", None)
    if result is not None and getattr(result, "unbuffered_active", False):
        result.unbuffered_active = False


_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def server_version(con: pymysql.Connection[Any]) -> str:
    """``SELECT version()`` (Doris and StarRocks answer a MySQL version: see :func:`engine_version`)."""
    with con.cursor() as cur:
        cur.execute("SELECT version()")
        row = cur.fetchone()
    return str(row[0]) if row else ""


def engine_version(con: pymysql.Connection[Any], dialect: str) -> tuple[int, int, int] | None:
    """The engine's own version (:func:`parse_version` of what the engine reports).

    ``SELECT version()`` answers a MySQL compatibility version on Doris (``5.7.99``) and on
    StarRocks, so they are asked ``SELECT @@version_comment`` (Doris: ``Doris version
    doris-4.0.5-...``) and ``SELECT current_version()`` (StarRocks: ``4.0.1-...``); MySQL and
    MariaDB answer ``version()``.
    """
    queries = {"doris": "SELECT @@version_comment", "starrocks": "SELECT current_version()"}
    try:
        with con.cursor() as cur:
            cur.execute(queries.get(dialect, "SELECT version()"))
            row = cur.fetchone()
            text = str(row[0]) if row else ""
    except _pymysql().err.Error:  # an engine without the function: fall back to version()
        text = server_version(con)
    return parse_version(dialect, text)


def parse_version(dialect: str, text: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` from a version string (Doris: the part after ``doris-``)."""
    if dialect == "doris" and "doris-" in text.lower():
        text = text[text.lower().index("doris-") + len("doris-") :]
    match = _VERSION.search(text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def has_asof_join(dialect: str, version: tuple[int, int, int] | None) -> bool:
    """ASOF JOIN exists from Doris 4.0.5 (and 4.1.0) and StarRocks 4.0; never in MySQL/MariaDB."""
    if version is None:
        return False
    if dialect == "doris":
        return version >= (4, 0, 5)
    if dialect == "starrocks":
        return version >= (4, 0, 0)
    return False
