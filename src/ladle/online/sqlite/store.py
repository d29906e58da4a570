"""The embedded online store: one SQLite file in WAL mode (layout in docs/online.md).

One table per (project, view), named ``"<project>:<view>"``, ``WITHOUT ROWID``::

    __key        BLOB PRIMARY KEY   -- the entity key every store uses (ladle.online.keys)
    __event_ts   INTEGER            -- µs since the epoch, UTC
    __created_ts INTEGER            -- µs; the write time when rows carry no created timestamp
    __row        BLOB               -- the row in the stamped format every store uses (ladle.online.codec.stamped)

A catalog table ``__ladle_tables`` maps each table to its project and view, keeps the schema of
every layout fingerprint ever written (so rows written before a feature was added still decode, and
teardown finds every table of one project) and each table's format; tables of an older format are
converted when a connection is opened (:mod:`.migrate`).

Writes are one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` (newer event wins; on equal events the
newer-or-equal created timestamp) run with ``executemany`` in chunks inside one ``BEGIN IMMEDIATE``
transaction: atomic, and right whatever order writers and rows arrive in. Reads of many entities are
one statement per 256 keys (a ``VALUES`` list left-joined to the table, so rows come back in request
order). Readers never block the writer (WAL). Each thread, and each forked process, gets its own
connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from ladle.config import RepoConfig, StrictModel, resolve_path
from ladle.definitions import FeatureView
from ladle.errors import BackendError, BackendUnavailableError
from ladle.online import columns as colconv
from ladle.online.base import ReadRequest, ViewRows
from ladle.online.codec.history import fields_from_json
from ladle.online.codec.stamped import ViewLayout, layout_for
from ladle.online.codec.stamped_decode import Resolver, decode_view
from ladle.online.keys import entity_join_keys, text_entity_keys
from ladle.online.sqlite.migrate import upgrade
from ladle.online.sqlite.sql import (
    BUCKETS,
    CATALOG,
    CREATE_CATALOG,
    FORMAT,
    MAX_IN,
    RANGES,
    WRITE_CHUNK,
    Table,
    create_table_sql,
    encode_rows,
    quote,
    schemas_json,
    table_name,
)


class SqliteOnlineStoreConfig(StrictModel):
    """``online_store: {type: sqlite, path: data/online_store.db}`` (path relative to the repo)."""

    type: Literal["sqlite"] = "sqlite"
    path: str = Field("data/online_store.db", description="the database file, relative to the repo")
    busy_timeout_seconds: float = Field(30.0, gt=0, description="how long a writer waits for another one")
    bulk_commit_rows: int = Field(1_000_000, gt=0, description="materialization commits every this many rows")
    bulk_cache_mb: int = Field(256, gt=0, description="page cache while materializing (freed afterwards)")


@dataclass
class _ReadPlan:
    """How to read one view object (cached per view object): its table, current layout, join keys."""

    view: FeatureView
    table: Table
    layout: ViewLayout
    join_keys: tuple[str, ...]


class SqliteOnlineStore:
    """Online store in one SQLite file; safe for several reader processes and one writer."""

    config_class: ClassVar[type[StrictModel]] = SqliteOnlineStoreConfig

    def __init__(self, config: RepoConfig) -> None:
        cfg = config.online_store
        if not isinstance(cfg, SqliteOnlineStoreConfig):
            cfg = SqliteOnlineStoreConfig.model_validate(dict(cfg or {}))
        self.config = cfg
        self.path: Path = resolve_path(config, cfg.path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._tables: dict[tuple[str, str], Table] = {}
        self._plans: OrderedDict[int, _ReadPlan] = OrderedDict()
        self._pid = os.getpid()

    # -- connections ------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        try:
            conn: sqlite3.Connection = self._local.conn
        except AttributeError:
            conn = self._connect()
        return conn

    def _connect(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            # SQLite forbids using a parent's connection in a forked child: leave them unclosed.
            self._pid = os.getpid()
            self._connections = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.config.busy_timeout_seconds,
                cached_statements=1024,
            )
            _wal(conn, self.config.busy_timeout_seconds)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(CREATE_CATALOG)
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailableError(f"cannot open the SQLite online store at {self.path}: {exc}") from exc
        try:
            upgrade(conn, time.time_ns() // 1000)
        except sqlite3.Error as exc:
            conn.close()
            raise BackendError(f"SQLite online store {self.path}: converting older tables failed: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _begin(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite online store {self.path}: cannot start a write: {exc}") from exc

    def _commit(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise BackendError(f"SQLite online store {self.path}: commit failed: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        self._begin(conn)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._commit(conn)

    # -- catalog ----------------------------------------------------------------------------
    def _load(self, conn: sqlite3.Connection, project: str, view: str) -> Table | None:
        name = table_name(project, view)
        row = conn.execute(f"SELECT schemas FROM {CATALOG} WHERE tbl = ?", (name,)).fetchone()
        if row is None:
            self._tables.pop((project, view), None)
            return None
        layouts = {}
        for fields in json.loads(row[0]).values():
            layout = ViewLayout(fields_from_json(fields))
            layouts[layout.fingerprint] = layout
        table = Table(name, layouts)
        self._tables[(project, view)] = table
        return table

    def _writable(self, conn: sqlite3.Connection, project: str, view: FeatureView, layout: ViewLayout) -> Table:
        """The view's table, created or taught the current schema (inside a write transaction)."""
        table = self._tables.get((project, view.name))
        if table is not None and layout.fingerprint in table.layouts:
            return table
        table = self._load(conn, project, view.name)
        if table is None:
            conn.execute(create_table_sql(table_name(project, view.name)))
            table = Table(table_name(project, view.name), {})
        if layout.fingerprint not in table.layouts:
            table.layouts[layout.fingerprint] = layout
            conn.execute(
                f"INSERT INTO {CATALOG} (tbl, project, view, schemas, format) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tbl) DO UPDATE SET schemas = excluded.schemas",
                (table.name, project, view.name, schemas_json(table.layouts.values()), FORMAT),
            )
        self._tables[(project, view.name)] = table
        return table

    def _forget(self, project: str | None = None) -> None:
        if project is None:
            self._tables.clear()
        else:
            for key in [k for k in list(self._tables) if k[0] == project]:
                self._tables.pop(key, None)
        self._plans.clear()

    # -- writes -----------------------------------------------------------------------------
    def write(self, project: str, view: FeatureView, rows: pa.Table) -> int:
        """Upsert rows (newest event, then newest created timestamp, wins); return rows changed."""
        return self._write(project, view, [rows], bulk=False)

    def write_batches(self, project: str, view: FeatureView, batches: Iterable[pa.Table]) -> int:
        """Materialization's path: few large transactions and a large page cache.

        With one transaction per batch, every batch of keys spread over the whole table rewrites
        most of its pages into the WAL; here pages are written once per ``bulk_commit_rows``.
        Other writers wait meanwhile (up to ``busy_timeout_seconds``).
        """
        return self._write(project, view, batches, bulk=True)

    def _write(self, project: str, view: FeatureView, batches: Iterable[pa.Table], bulk: bool) -> int:
        layout = layout_for(view.features)
        conn = self._conn()
        cache = conn.execute("PRAGMA cache_size").fetchone()[0]
        if bulk:
            conn.execute(f"PRAGMA cache_size={-self.config.bulk_cache_mb * 1024}")
        written = pending = 0
        table: Table | None = None  # set while a transaction is open
        try:
            for rows in batches:
                colconv.check_write_columns(view, rows)
                if rows.num_rows == 0:
                    continue
                if table is None:
                    self._begin(conn)
                    table = self._writable(conn, project, view, layout)
                written += self._upsert(conn, table, view, rows, layout)
                pending += rows.num_rows
                if bulk and pending >= self.config.bulk_commit_rows:
                    table, pending = None, 0
                    self._commit(conn)
            if table is not None:
                table = None
                self._commit(conn)
        except sqlite3.OperationalError as exc:
            self._rollback(conn, project, table)
            raise BackendError(f"SQLite online store {self.path}: write to '{view.name}' failed: {exc}") from exc
        except BaseException:
            self._rollback(conn, project, table)
            raise
        finally:
            if bulk:
                conn.execute(f"PRAGMA cache_size={cache}")
                conn.execute("PRAGMA shrink_memory")
        return written

    def _rollback(self, conn: sqlite3.Connection, project: str, table: Table | None) -> None:
        if table is not None:
            conn.execute("ROLLBACK")
        self._forget(project)

    @staticmethod
    def _upsert(conn: sqlite3.Connection, table: Table, view: FeatureView, rows: pa.Table, layout: ViewLayout) -> int:
        """Upsert one batch in chunks (memory stays bounded whatever its size); rows changed."""
        now_us = time.time_ns() // 1000
        written = 0
        for start in range(0, rows.num_rows, WRITE_CHUNK):
            params = encode_rows(view, rows.slice(start, WRITE_CHUNK), layout, now_us)
            written += conn.executemany(table.upsert, params).rowcount
        return written

    # -- reads ------------------------------------------------------------------------------
    def read(self, project: str, requests: Sequence[ReadRequest]) -> list[ViewRows]:
        """Stored rows for each request, in order (``None`` event timestamps for missing entities)."""
        conn = self._conn()
        out = []
        for req in requests:
            try:
                out.append(self._read(conn, project, req))
            except sqlite3.OperationalError:
                # Another process dropped or recreated the table: refresh what we know, once.
                self._forget(project)
                try:
                    out.append(self._read(conn, project, req))
                except sqlite3.Error as exc:
                    raise BackendError(f"SQLite online store {self.path}: read of '{req.view.name}': {exc}") from exc
        return out

    def _plan(self, conn: sqlite3.Connection, project: str, view: FeatureView) -> _ReadPlan | None:
        plan = self._plans.get(id(view))
        if plan is not None and plan.view is view and self._tables.get((project, view.name)) is plan.table:
            return plan
        table = self._tables.get((project, view.name)) or self._load(conn, project, view.name)
        if table is None:
            return None
        plan = _ReadPlan(view, table, layout_for(view.features), entity_join_keys(view))
        self._plans[id(view)] = plan
        if len(self._plans) > 512:
            self._plans.popitem(last=False)
        return plan

    def _read(self, conn: sqlite3.Connection, project: str, req: ReadRequest) -> ViewRows:
        features = req.features
        plan = self._plan(conn, project, req.view)
        keys = text_entity_keys(plan.join_keys if plan else entity_join_keys(req.view), req.keys)
        n = len(keys)
        if plan is None or n == 0:
            return ViewRows([None] * n, {f: [None] * n for f in features})
        blobs: list[bytes | None]
        if n == 1:
            row = conn.execute(plan.table.select_one, (keys[0],)).fetchone()
            blobs = [None if row is None else row[0]]
        else:
            blobs = []
            for start in range(0, n, MAX_IN):
                part = keys[start : start + MAX_IN]
                bucket = next(b for b in BUCKETS if b >= len(part))
                rows = conn.execute(plan.table.select_many(bucket), part + [None] * (bucket - len(part))).fetchall()
                order, found = zip(*rows, strict=True)
                if order != RANGES[bucket]:  # SQLite kept the VALUES order so far; never rely on it blindly
                    _, found = zip(*sorted(rows, key=lambda r: r[0]), strict=True)
                blobs.extend(found[: len(part)])
        return decode_view(plan.layout, blobs, features, self._resolver(conn, project, plan))

    def _resolver(self, conn: sqlite3.Connection, project: str, plan: _ReadPlan) -> Resolver:
        """Layouts of older schemas of the view (the catalog is re-read once if one is new to us)."""

        def resolve(fp: int) -> ViewLayout | None:
            layout = plan.table.layouts.get(fp)
            if layout is None:
                fresh = self._load(conn, project, plan.view.name)
                layout = fresh.layouts.get(fp) if fresh else None
            return layout

        return resolve

    def erase_entity(self, project: str, view: FeatureView, keys: Mapping[str, Any], dry_run: bool = False) -> int:
        """Delete (or count, ``dry_run``) one entity's rows of ``view`` (:class:`~ladle.online.base.EntityEraser`)."""
        from ladle.online.sqlite.erase import erase_entity

        with self._transaction() as conn:
            table = self._load(conn, project, view.name)
            return 0 if table is None else erase_entity(conn, table.name, view, keys, dry_run)

    # -- lifecycle --------------------------------------------------------------------------
    def update(self, project: str, keep: Sequence[FeatureView], delete: Sequence[FeatureView]) -> None:
        """Create tables for (online) ``keep`` views and learn their schemas; drop ``delete``."""
        with self._transaction() as conn:
            for view in keep:
                if view.online:
                    self._writable(conn, project, view, layout_for(view.features))
            for view in delete:
                self._drop(conn, project, view.name)
        self._forget(project)

    def delete_view(self, project: str, view: FeatureView) -> None:
        """Drop every stored row of one view (other views and projects are untouched)."""
        with self._transaction() as conn:
            self._drop(conn, project, view.name)
        self._forget(project)

    def teardown(self, project: str, views: Sequence[FeatureView]) -> None:
        """Drop every table of ``project`` (found in the catalog), and nothing else."""
        with self._transaction() as conn:
            names = {r[0] for r in conn.execute(f"SELECT view FROM {CATALOG} WHERE project = ?", (project,))}
            for view_name in names | {v.name for v in views}:
                self._drop(conn, project, view_name)
        self._forget(project)

    @staticmethod
    def _drop(conn: sqlite3.Connection, project: str, view: str) -> None:
        name = table_name(project, view)
        conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")
        conn.execute(f"DELETE FROM {CATALOG} WHERE tbl = ?", (name,))

    def ping(self) -> None:
        """Check the file can be opened and queried."""
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"SQLite online store {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close every connection this store opened (in this process)."""
        with self._lock:
            conns, self._connections = self._connections, []
        if os.getpid() == self._pid:
            for conn in conns:
                conn.close()
        self._local = threading.local()
        self._forget()


def _wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL mode, retrying: SQLite answers "locked" without waiting while another
    connection is switching the same new file."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
