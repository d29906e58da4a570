"""Stream-process sessions in the registry database: when ``ladle stream`` ran, on which views, how it ended.

One table, created on first use beside the registry's own (like ``schedule_runs``):
``stream_sessions`` holds one row per :meth:`StreamProcess.run` with its start, end, status
(``running``, ``stopped``: a graceful stop, ``failed``), the rows the engine emitted and the error if
any. The web UI shows them as stream job history next to materialization and schedule runs.

Recording is best effort: a registry that cannot be written is logged and never stops the stream.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ladle.errors import LadleError
from ladle.registry.engine import Database
from ladle.registry.extension import ExtensionTables
from ladle.registry.schema import UtcDateTime

log = logging.getLogger(__name__)
metadata = sa.MetaData()

stream_sessions = sa.Table(
    "stream_sessions",
    metadata,
    sa.Column("session_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("feature_views", sa.JSON, nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("rows_emitted", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_stream_sessions_started", "project_id", "started_at"),
)

_PG_SCHEMA_LOCK = 0x1AD22  # distinct per extension (ladle.registry.extension)


@dataclass(frozen=True)
class StreamSession:
    """One run of a stream process."""

    session_id: int
    feature_views: tuple[str, ...]
    owner: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_emitted: int
    detail: str


class StreamSessions(ExtensionTables):
    """Reads and writes one project's stream sessions."""

    metadata = metadata
    schema_lock = _PG_SCHEMA_LOCK

    def begin(self, feature_views: Sequence[str], owner: str | None = None) -> int:
        """Record a running session; return its id."""
        self._schema()
        row = {
            "project_id": self.project, "feature_views": list(feature_views),
            "owner": owner or f"{socket.gethostname()}:{os.getpid()}", "status": "running",
            "started_at": datetime.now(UTC), "finished_at": None, "rows_emitted": 0, "detail": "",
        }  # fmt: skip
        with self._db.write() as conn:
            key = conn.execute(stream_sessions.insert().values(**row)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def finish(self, session_id: int, status: str, rows: int, detail: str = "") -> None:
        """Record how a session ended (``stopped`` or ``failed``)."""
        t = stream_sessions
        with self._db.write() as conn:
            conn.execute(
                t.update()
                .where(t.c.session_id == session_id, t.c.project_id == self.project)
                .values(status=status, finished_at=datetime.now(UTC), rows_emitted=int(rows), detail=detail[:2000])
            )

    def sessions(self, limit: int = 50) -> list[StreamSession]:
        """Sessions of the project, newest first."""
        self._schema()
        t = stream_sessions
        query = sa.select(t).where(t.c.project_id == self.project).order_by(t.c.started_at.desc()).limit(limit)
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            StreamSession(
                r["session_id"],
                tuple(r["feature_views"]),
                r["owner"],
                r["status"],
                r["started_at"],
                r["finished_at"],
                r["rows_emitted"],
                r["detail"],
            )
            for r in rows
        ]


@contextmanager
def recorded_session(store: Any, feature_views: Sequence[str], rows: Callable[[], int]) -> Iterator[None]:
    """Record the enclosed stream run as a session of ``store``'s project (best effort).

    ``rows`` is asked at the end for the number of rows the engine emitted.
    """
    journal: StreamSessions | None = None
    session_id = 0
    try:
        journal = StreamSessions(Database(store.config.registry, store.repo_path), store.project)
        session_id = journal.begin(feature_views)
    except LadleError as exc:
        log.warning("stream session not recorded in the registry: %s", exc)
        journal = None
    try:
        yield
    except BaseException as exc:
        _finish(journal, session_id, "failed", rows, f"{type(exc).__name__}: {exc}")
        raise
    _finish(journal, session_id, "stopped", rows, "")


def _finish(journal: StreamSessions | None, session_id: int, status: str, rows: Callable[[], int], detail: str) -> None:
    if journal is None:
        return
    try:
        journal.finish(session_id, status, rows(), detail)
    except LadleError as exc:
        log.warning("stream session %s not finished in the registry: %s", session_id, exc)
    finally:
        journal._db.close()


def counter_total(counter: Any) -> int:
    """The sum over every label of a prometheus_client counter (what a session reports as rows)."""
    return int(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))
