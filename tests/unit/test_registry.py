"""Registry pieces that need no particular database: the cache, error translation, schema versioning."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ladle.config import RegistryConfig
from ladle.errors import BackendUnavailableError, RegistryError
from ladle.registry.base import RegistrySnapshot, canonical_spec, content_hash, default_applied_by
from ladle.registry.cache import SnapshotCache
from ladle.registry.schema import SCHEMA_VERSION
from ladle.registry.sql import SqlRegistry


class FakeDatabase:
    """Stands in for the database behind the cache: a version number and a load counter."""

    def __init__(self) -> None:
        self.version = 1
        self.loads = 0
        self.probes = 0
        self.fail = False
        self.slow = threading.Event()
        self.slow.set()

    def probe(self) -> int:
        self.probes += 1
        if self.fail:
            raise BackendUnavailableError("database down")
        return self.version

    def load(self) -> RegistrySnapshot:
        self.slow.wait(5)
        if self.fail:
            raise BackendUnavailableError("database down")
        self.loads += 1
        return RegistrySnapshot(project="p", version=self.version)


def test_sync_cache_reloads_only_when_version_moved() -> None:
    db = FakeDatabase()
    cache = SnapshotCache(0.3, "sync", db.probe, db.load)
    assert cache.get().version == 1 and db.loads == 1
    time.sleep(0.35)
    assert cache.get().version == 1
    assert (db.probes, db.loads) == (1, 1)  # version unchanged: probed, not reloaded
    db.version = 2
    assert cache.get().version == 1  # within the ttl again
    time.sleep(0.35)
    assert cache.get().version == 2 and db.loads == 2


def test_failed_refresh_keeps_serving_the_last_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    db = FakeDatabase()
    cache = SnapshotCache(0.01, "sync", db.probe, db.load)
    cache.get()
    db.fail = True
    time.sleep(0.02)
    assert cache.get().version == 1
    assert "serving the cached definitions" in caplog.text
    with pytest.raises(BackendUnavailableError):
        cache.get(allow_cache=False)


def test_thread_cache_never_waits_for_a_slow_refresh() -> None:
    db = FakeDatabase()
    cache = SnapshotCache(0.02, "thread", db.probe, db.load)
    try:
        cache.get()
        db.slow.clear()  # the next load hangs
        db.version = 2
        time.sleep(0.05)
        start = time.monotonic()
        assert cache.get().version == 1
        assert time.monotonic() - start < 0.5  # the hanging load would take 5 s
        db.slow.set()
        deadline = time.monotonic() + 2
        while cache.get().version != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.get().version == 2
    finally:
        db.slow.set()
        cache.close()


def test_put_wins_over_an_older_background_load() -> None:
    db = FakeDatabase()
    cache = SnapshotCache(60, "sync", db.probe, db.load)
    cache.get()
    db.version = 2
    db.slow.clear()
    refresher = threading.Thread(target=cache.refresh)
    refresher.start()
    time.sleep(0.05)
    cache.put(RegistrySnapshot(project="p", version=3))  # a write through this process
    db.slow.set()
    refresher.join()
    assert cache.get().version == 3


def test_unreachable_postgres_names_host_not_password(tmp_path: Path) -> None:
    config = RegistryConfig(path="postgresql://ladle:hunter2@127.0.0.1:1/registry")
    registry = SqlRegistry(config, "carbon", tmp_path)
    with pytest.raises(BackendUnavailableError) as info:
        registry.snapshot()
    message = str(info.value)
    assert "127.0.0.1:1/registry" in message and "hunter2" not in message
    assert isinstance(info.value.__cause__, sa.exc.OperationalError)
    registry.close()


def test_postgresql_urls_are_accepted_as_written() -> None:
    url = RegistryConfig(path="postgresql://postgres@127.0.0.1:5432/ladle").url(Path("."))
    assert url == "postgresql+psycopg://postgres@127.0.0.1:5432/ladle"
    assert RegistryConfig(path="data/r.db").url(Path("/repo")) == "sqlite:////repo/data/r.db"


def test_schema_is_created_once_and_newer_schemas_are_refused(tmp_path: Path) -> None:
    config = RegistryConfig(path=str(tmp_path / "nested" / "registry.db"), cache_mode="sync")
    first = SqlRegistry(config, "carbon", tmp_path)
    first.snapshot()
    second = SqlRegistry(config, "carbon", tmp_path)  # tables exist: creation is idempotent
    assert second.snapshot().version == 0
    engine = sa.create_engine(config.url(tmp_path))
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ladle_metadata SET metadata_value = :v WHERE metadata_key = 'schema_version'"),
            {"v": str(SCHEMA_VERSION + 1)},
        )
    engine.dispose()
    third = SqlRegistry(config, "carbon", tmp_path)
    with pytest.raises(RegistryError, match="upgrade Ladle"):
        third.snapshot()
    for registry in (first, second, third):
        registry.close()


def test_content_hash_ignores_key_order_and_tuples() -> None:
    a = {"name": "x", "features": ("a", "b"), "tags": {"k": "v", "a": "b"}}
    b = {"tags": {"a": "b", "k": "v"}, "features": ["a", "b"], "name": "x"}
    assert content_hash(a) == content_hash(b)
    assert canonical_spec(a) == b
    assert content_hash(a) != content_hash({**b, "name": "y"})


def test_default_applied_by() -> None:
    who = default_applied_by("ladle apply")
    user_host, command = who.split(" ", 1)
    assert command == "ladle apply" and "@" in user_host
