"""Online store factories for the conformance suite (``tests/conformance/test_online_store.py``).

A factory opens a store on the test's storage. Its parameters are pytest fixture names
(``tmp_path``, ``redis_address``, ...), resolved by ``conftest.py``; calling it again with the same
arguments opens *another instance on the same data* (the concurrent-writer cases do that, also in
child processes, so arguments must be picklable). Tests isolate themselves with a fresh project
name each, and tear their project down at the end.

The Redis factories live in ``redis_backends.py`` (``make_redis``, ``make_redis_cluster``), which may
also export ``GAPS = {"<test name>": "reason"}`` per backend: cases the backend cannot pass, run as
strict xfails.
"""

from __future__ import annotations

from pathlib import Path

from ladle.config import RepoConfig
from ladle.online.base import OnlineStore
from ladle.online.sqlite.store import SqliteOnlineStore, SqliteOnlineStoreConfig

#: Cases the SQLite store cannot pass (test name → reason); none.
SQLITE_GAPS: dict[str, str] = {}


def make_sqlite(tmp_path: Path) -> OnlineStore:
    """A SQLite online store in ``tmp_path/online.db`` (the same file on every call)."""
    config = RepoConfig(
        project="conformance",
        online_store=SqliteOnlineStoreConfig(path=str(tmp_path / "online.db")),
        repo_path=tmp_path,
    )
    return SqliteOnlineStore(config)
