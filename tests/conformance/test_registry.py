"""Registry conformance: the same cases on SQLite and PostgreSQL (``pytest -m sqlite`` / ``-m postgres``)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ladle import Entity, FeatureService, FeatureView, Field, FileSource, Float64, String, ValueType
from ladle.config import RegistryConfig
from ladle.errors import ConflictError, RegistryError
from ladle.registry.base import ObjectChange
from ladle.registry.schedule_runs import ScheduleJournal
from ladle.registry.sql import SqlRegistry

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg_database(postgres_server: str) -> Iterator[str]:
    """One PostgreSQL database for this module (creating one per test costs more than the test)."""
    name = f"ladle_registry_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(postgres_server).set(drivername="postgresql", database=name).render_as_string()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_schema_url(pg_database: str) -> Iterator[str]:
    """An empty schema of the module's database, selected through the URL's search_path."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_database.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg_database}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def registry_path(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh registry location: a SQLite file, or an empty PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "registry.db")
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def open_registry(registry_path: str, tmp_path: Path) -> Iterator[Callable[..., SqlRegistry]]:
    """Factory of registries on the test's database; all closed at the end."""
    opened: list[SqlRegistry] = []

    def make(project: str = "carbon", **config: Any) -> SqlRegistry:
        config.setdefault("cache_mode", "sync")
        registry = SqlRegistry(RegistryConfig(path=registry_path, **config), project, tmp_path)
        opened.append(registry)
        return registry

    yield make
    for registry in opened:
        registry.close()


# -- definitions used by the cases ----------------------------------------------------------------
commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
prices_source = FileSource(name="prices_source", path="data/prices.parquet", timestamp_field="event_timestamp")


def prices_view(ttl_days: int = 1, extra: bool = False) -> FeatureView:
    schema = [Field(name="close_price", dtype=Float64)]
    if extra:
        schema.append(Field(name="currency", dtype=String))
    return FeatureView(
        name="prices", source=prices_source, entities=[commodity], ttl=timedelta(days=ttl_days), schema=schema
    )


def change(obj: Any, kind: str) -> ObjectChange:
    return ObjectChange(kind, obj.name, obj.to_spec())  # type: ignore[arg-type]


def base_changes() -> list[ObjectChange]:
    view = prices_view()
    service = FeatureService(name="model", features=[view])
    return [
        change(commodity, "entity"),
        change(prices_source, "data_source"),
        change(view, "feature_view"),
        change(service, "feature_service"),
    ]


# -- tables and round trips -----------------------------------------------------------------------
def test_empty_project_and_feast_table_names(open_registry: Callable[..., SqlRegistry], registry_path: str) -> None:
    registry = open_registry()
    snapshot = registry.snapshot()
    assert snapshot.version == 0 and not snapshot.feature_views
    assert registry.list_projects() == []
    registry.apply_changes(base_changes(), expected_version=0)
    engine = sa.create_engine(RegistryConfig(path=registry_path).url(Path(".")))
    with engine.connect() as conn:
        counts = {
            table: conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()
            for table in ("entities", "data_sources", "feature_views", "feature_services", "projects")
        }
        raw = conn.execute(sa.text("SELECT spec FROM feature_views WHERE feature_view_name = 'prices'")).scalar()
        schema_version = conn.execute(
            sa.text("SELECT metadata_value FROM ladle_metadata WHERE metadata_key = 'schema_version'")
        ).scalar()
    engine.dispose()
    assert counts == {"entities": 1, "data_sources": 1, "feature_views": 1, "feature_services": 1, "projects": 1}
    spec = raw if isinstance(raw, dict) else json.loads(raw)  # readable JSON, not a blob
    assert spec["name"] == "prices" and spec["ttl_seconds"] == 86400
    assert schema_version == "1"


def test_apply_round_trip(open_registry: Callable[..., SqlRegistry]) -> None:
    registry = open_registry()
    snapshot = registry.apply_changes(base_changes(), expected_version=0, applied_by="tester@ci")
    assert snapshot.version == 1
    assert snapshot.entities == {"commodity": commodity}
    assert snapshot.data_sources == {"prices_source": prices_source}
    assert snapshot.feature_views["prices"] == prices_view()
    assert snapshot.feature_service("model").feature_view_names == ["prices"]
    assert registry.list_projects() == ["carbon"]
    # Another instance reads the same thing.
    assert open_registry().snapshot().feature_views["prices"].to_spec() == prices_view().to_spec()


def test_versions_change_writes_new_version_and_no_change_writes_nothing(
    open_registry: Callable[..., SqlRegistry],
) -> None:
    registry = open_registry()
    registry.apply_changes(base_changes(), expected_version=0, applied_by="alice@host ladle apply")
    again = registry.apply_changes(base_changes(), expected_version=1)
    assert again.version == 1
    assert len(registry.history("feature_view", "prices")) == 1

    changed = registry.apply_changes(
        [change(prices_view(ttl_days=2), "feature_view")], expected_version=1, applied_by="bob@host ladle apply"
    )
    assert changed.version == 2
    history = registry.history("feature_view", "prices")
    assert [h.version for h in history] == [1, 2]
    assert [h.applied_by for h in history] == ["alice@host ladle apply", "bob@host ladle apply"]
    assert history[0].content_hash != history[1].content_hash
    assert history[1].spec is not None and history[1].spec["ttl_seconds"] == 2 * 86400
    assert history[0].applied_at <= history[1].applied_at and history[1].applied_at.tzinfo is not None
    # Other objects were not touched.
    assert len(registry.history("entity", "commodity")) == 1


def test_delete_records_a_deletion_version(open_registry: Callable[..., SqlRegistry]) -> None:
    registry = open_registry()
    registry.apply_changes(base_changes(), expected_version=0)
    snapshot = registry.apply_changes(
        [ObjectChange("feature_service", "model", None), ObjectChange("feature_view", "prices", None)],
        expected_version=1,
    )
    assert "prices" not in snapshot.feature_views and "model" not in snapshot.feature_services
    history = registry.history("feature_view", "prices")
    assert [(h.version, h.spec is None) for h in history] == [(1, False), (2, True)]
    recreated = registry.apply_changes([change(prices_view(), "feature_view")], expected_version=2)
    assert "prices" in recreated.feature_views
    assert [h.version for h in registry.history("feature_view", "prices")] == [1, 2, 3]


def test_stale_apply_conflicts_and_writes_nothing(open_registry: Callable[..., SqlRegistry]) -> None:
    first, second = open_registry(), open_registry()
    first.apply_changes(base_changes(), expected_version=0)
    stale = second.snapshot().version
    first.apply_changes([change(prices_view(ttl_days=3), "feature_view")], expected_version=stale)
    with pytest.raises(ConflictError, match="expected version 1, found 2"):
        second.apply_changes([change(prices_view(extra=True), "feature_view")], expected_version=stale)
    view = second.snapshot(allow_cache=False).feature_views["prices"]
    assert view.ttl == timedelta(days=3) and view.feature_names == ["close_price"]
    assert len(second.history("feature_view", "prices")) == 2


def test_two_first_applies_of_a_project_conflict(open_registry: Callable[..., SqlRegistry]) -> None:
    first, second = open_registry(), open_registry()
    first.apply_changes([change(commodity, "entity")], expected_version=0)
    with pytest.raises(ConflictError):
        second.apply_changes([change(prices_source, "data_source")], expected_version=0)
    assert "prices_source" not in second.snapshot(allow_cache=False).data_sources


def _concurrent_apply(path: str, repo: str, ttl_days: int, barrier: Any, results: Any) -> None:
    """Child process: read the project version, wait for the other child, apply, retry once on conflict."""
    registry = SqlRegistry(RegistryConfig(path=path, cache_mode="sync"), "carbon", Path(repo))
    try:
        base = registry.snapshot(allow_cache=False).version
        name = f"view_{ttl_days}"
        view = FeatureView(
            name=name,
            source=prices_source,
            entities=[commodity],
            ttl=timedelta(days=ttl_days),
            schema=[Field(name="close_price", dtype=Float64)],
        )
        barrier.wait(timeout=60)
        try:
            registry.apply_changes([change(view, "feature_view")], expected_version=base)
            results.put(("ok", ""))
        except ConflictError as exc:
            results.put(("conflict", str(exc)))
            retry = registry.snapshot(allow_cache=False).version
            registry.apply_changes([change(view, "feature_view")], expected_version=retry)
    except Exception as exc:  # report anything else to the parent instead of dying silently
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        registry.close()


@pytest.mark.slow
def test_concurrent_applies_from_two_processes(
    open_registry: Callable[..., SqlRegistry], registry_path: str, tmp_path: Path
) -> None:
    registry = open_registry()
    registry.apply_changes([change(commodity, "entity"), change(prices_source, "data_source")], expected_version=0)
    # fork: the children start in milliseconds (spawn re-imports everything); each opens its own engine.
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    children = [
        ctx.Process(target=_concurrent_apply, args=(registry_path, str(tmp_path), days, barrier, results))
        for days in (1, 2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    outcomes = sorted(results.get(timeout=5) for _ in children)
    assert [o[0] for o in outcomes] == ["conflict", "ok"], outcomes
    assert "changed since this apply read it" in outcomes[0][1]
    final = registry.snapshot(allow_cache=False)
    # The loser retried from the new version: both updates are there, nothing was lost.
    assert set(final.feature_views) == {"view_1", "view_2"}
    assert final.version == 3
    assert len(registry.history("feature_view", "view_1")) == 1
    assert len(registry.history("feature_view", "view_2")) == 1


def _first_apply(path: str, repo: str, ttl_days: int, barrier: Any, results: Any) -> None:
    """Child process: on a brand-new database, apply a first version of the project at the same time as another."""
    barrier.wait(timeout=60)
    registry = SqlRegistry(RegistryConfig(path=path, cache_mode="sync"), "carbon", Path(repo))
    view = FeatureView(
        name=f"view_{ttl_days}",
        source=prices_source,
        entities=[commodity],
        ttl=timedelta(days=ttl_days),
        schema=[Field(name="close_price", dtype=Float64)],
    )
    changes = [change(commodity, "entity"), change(prices_source, "data_source"), change(view, "feature_view")]
    try:
        try:
            registry.apply_changes(changes, expected_version=0)
            results.put(("ok", ""))
        except ConflictError as exc:
            results.put(("conflict", str(exc)))
            registry.apply_changes(changes, expected_version=registry.snapshot(allow_cache=False).version)
    except Exception as exc:  # report anything else to the parent instead of dying silently
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        registry.close()


@pytest.mark.slow
def test_two_processes_start_on_a_fresh_database(
    open_registry: Callable[..., SqlRegistry], registry_path: str, tmp_path: Path
) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    children = [
        ctx.Process(target=_first_apply, args=(registry_path, str(tmp_path), days, barrier, results)) for days in (1, 2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    outcomes = sorted(results.get(timeout=5) for _ in children)
    assert [o[0] for o in outcomes] == ["conflict", "ok"], outcomes
    final = open_registry().snapshot()
    assert final.version == 2 and set(final.feature_views) == {"view_1", "view_2"}
    assert len(open_registry().history("entity", "commodity")) == 1


# -- materialization bookkeeping ------------------------------------------------------------------
def test_watermark_is_max_end_and_survives_reapply(open_registry: Callable[..., SqlRegistry]) -> None:
    registry = open_registry()
    registry.apply_changes(base_changes(), expected_version=0)
    assert registry.watermark("prices") is None
    registry.record_materialization("prices", T0, T0 + timedelta(days=2), 10)
    registry.record_materialization("prices", T0, T0 + timedelta(days=1), 5)  # an older backfill
    assert registry.watermark("prices") == T0 + timedelta(days=2)
    # Feast bug #2905: re-applying a changed view reset its intervals. Ours survive.
    registry.apply_changes([change(prices_view(ttl_days=5), "feature_view")], expected_version=1)
    assert registry.watermark("prices") == T0 + timedelta(days=2)
    assert registry.watermarks() == {"prices": T0 + timedelta(days=2)}
    # A removed view's watermark goes with it (its online rows are dropped too).
    registry.apply_changes(
        [ObjectChange("feature_service", "model", None), ObjectChange("feature_view", "prices", None)],
        expected_version=2,
    )
    assert registry.watermark("prices") is None


def test_watermark_naive_times_are_utc_and_bad_interval_rejected(open_registry: Callable[..., SqlRegistry]) -> None:
    registry = open_registry()
    registry.record_materialization("prices", datetime(2024, 1, 1), datetime(2024, 1, 3), 1)
    assert registry.watermark("prices") == datetime(2024, 1, 3, tzinfo=UTC)
    with pytest.raises(RegistryError, match="ends"):
        registry.record_materialization("prices", T0 + timedelta(days=1), T0, 1)


def test_materialization_runs(open_registry: Callable[..., SqlRegistry]) -> None:
    registry = open_registry()
    first = registry.begin_run("prices", T0, T0 + timedelta(days=1))
    second = registry.begin_run("other", T0, T0 + timedelta(days=1))
    registry.finish_run(first, "succeeded", rows=42, detail="ok")
    registry.finish_run(second, "failed", detail="source missing")
    runs = registry.runs()
    assert [r.run_id for r in runs] == [second, first]
    by_id = {r.run_id: r for r in runs}
    assert by_id[first].status == "succeeded" and by_id[first].rows_written == 42
    assert by_id[first].finished_at is not None and by_id[first].start == T0
    assert by_id[second].status == "failed" and by_id[second].detail == "source missing"
    assert [r.view for r in registry.runs(view="prices")] == ["prices"]
    assert len(registry.runs(limit=1)) == 1
    with pytest.raises(RegistryError):
        registry.finish_run(first, "exploded")
    with pytest.raises(RegistryError):
        registry.finish_run(9999, "failed")


def test_leases(open_registry: Callable[..., SqlRegistry]) -> None:
    registry = open_registry()
    assert registry.acquire_lease("nightly", "a", 60)
    assert not registry.acquire_lease("nightly", "b", 60)
    assert registry.acquire_lease("nightly", "a", 60)  # re-entrant for the holder
    assert registry.renew_lease("nightly", "a", 60)
    assert not registry.renew_lease("nightly", "b", 60)
    registry.release_lease("nightly", "b")  # not the holder: no effect
    assert not registry.acquire_lease("nightly", "b", 60)
    registry.release_lease("nightly", "a")
    assert registry.acquire_lease("nightly", "b", 0.2)
    time.sleep(0.3)
    assert registry.acquire_lease("nightly", "c", 60)  # expired: taken over
    assert not registry.renew_lease("nightly", "b", 60)
    # Leases are per project.
    assert open_registry(project="other").acquire_lease("nightly", "b", 60)


def test_lease_race_has_one_winner(open_registry: Callable[..., SqlRegistry]) -> None:
    registries = [open_registry() for _ in range(4)]
    for r in registries:
        r.snapshot()  # create the schema before the race
    barrier = threading.Barrier(len(registries))
    wins: list[str] = []

    def contend(i: int) -> None:
        barrier.wait()
        if registries[i].acquire_lease("race", f"owner{i}", 60):
            wins.append(f"owner{i}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(registries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1, wins


# -- teardown -------------------------------------------------------------------------------------
def test_delete_project_removes_only_that_project(open_registry: Callable[..., SqlRegistry]) -> None:
    carbon, other = open_registry(), open_registry(project="other")
    for registry in (carbon, other):
        registry.apply_changes(base_changes(), expected_version=0)
        registry.record_materialization("prices", T0, T0 + timedelta(days=1), 1)
        registry.acquire_lease("nightly", "me", 60)
        registry.finish_run(registry.begin_run("prices", T0, T0), "succeeded")
    journals = [ScheduleJournal.open(r.config, r.project, Path(".")) for r in (carbon, other)]
    for journal in journals:
        journal.ensure("nightly", T0)
    carbon.delete_project()
    assert journals[0].states() == {} and set(journals[1].states()) == {"nightly"}
    for journal in journals:
        journal.close()
    assert carbon.snapshot().version == 0 and not carbon.snapshot(allow_cache=False).entities
    assert carbon.history("feature_view", "prices") == []
    assert carbon.watermark("prices") is None and carbon.runs() == []
    assert carbon.acquire_lease("nightly", "someone-else", 60)
    assert carbon.list_projects() == ["other"]
    assert other.snapshot(allow_cache=False).feature_views.keys() == {"prices"}
    assert other.watermark("prices") is not None and len(other.runs()) == 1
    # The project can be applied again from scratch.
    assert carbon.apply_changes(base_changes(), expected_version=0).version == 1


# -- caching --------------------------------------------------------------------------------------
def _wait_for(predicate: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {seconds}s")


def test_sync_cache_refreshes_lazily_after_ttl(open_registry: Callable[..., SqlRegistry]) -> None:
    writer = open_registry()
    # A ttl long enough that a slow (loaded) machine still reads twice within it.
    reader = open_registry(cache_ttl_seconds=1.0, cache_mode="sync")
    writer.apply_changes([change(commodity, "entity")], expected_version=0)
    assert reader.snapshot().version == 1
    writer.apply_changes([change(prices_source, "data_source")], expected_version=1)
    assert reader.snapshot().version == 1  # still within the ttl: cached
    assert reader.snapshot(allow_cache=False).version == 2  # forced reload
    writer.apply_changes(base_changes()[2:], expected_version=2)
    waited = _wait_for(lambda: reader.snapshot().version == 3, 5.0)
    assert waited < 2.5
    assert "prices" in reader.snapshot().feature_views


def test_thread_cache_refreshes_in_background(open_registry: Callable[..., SqlRegistry]) -> None:
    writer = open_registry()
    reader = open_registry(cache_ttl_seconds=0.3, cache_mode="thread")
    writer.apply_changes([change(commodity, "entity")], expected_version=0)
    first = reader.snapshot()
    assert first.version == 1
    writer.apply_changes(base_changes()[1:], expected_version=1)
    # Nobody calls snapshot(): the background thread picks up the new version on its own.
    waited = _wait_for(lambda: reader._cache._snapshot is not None and reader._cache._snapshot.version == 2, 3.0)
    assert waited < 1.5
    assert reader.snapshot().feature_views.keys() == {"prices"}


def test_ttl_zero_loads_once(open_registry: Callable[..., SqlRegistry]) -> None:
    writer = open_registry()
    reader = open_registry(cache_ttl_seconds=0, cache_mode="thread")
    writer.apply_changes([change(commodity, "entity")], expected_version=0)
    assert reader.snapshot().version == 1
    writer.apply_changes([change(prices_source, "data_source")], expected_version=1)
    time.sleep(0.2)
    assert reader.snapshot().version == 1
    assert reader.snapshot(allow_cache=False).version == 2


def test_writes_refresh_own_cache_immediately(open_registry: Callable[..., SqlRegistry]) -> None:
    registry = open_registry(cache_ttl_seconds=3600, cache_mode="thread")
    assert registry.snapshot().version == 0
    registry.apply_changes(base_changes(), expected_version=0)
    assert registry.snapshot().version == 1 and "prices" in registry.snapshot().feature_views
    registry.delete_project()
    assert registry.snapshot().version == 0


def test_two_registries_see_each_others_applies_within_ttl(open_registry: Callable[..., SqlRegistry]) -> None:
    ttl = 0.3
    a = open_registry(cache_ttl_seconds=ttl, cache_mode="thread")
    b = open_registry(cache_ttl_seconds=ttl, cache_mode="thread")
    assert a.snapshot().version == b.snapshot().version == 0
    a.apply_changes(base_changes(), expected_version=0)
    assert _wait_for(lambda: b.snapshot().version == 1, 5.0) <= ttl + 1.0
    b.apply_changes([change(prices_view(ttl_days=9), "feature_view")], expected_version=1)
    assert _wait_for(lambda: a.snapshot().feature_views["prices"].ttl == timedelta(days=9), 5.0) <= ttl + 1.0


def _use_inherited(registry: SqlRegistry, results: Any) -> None:
    """Forked child: use the parent's registry object (its pool and refresher must be fresh)."""
    try:
        registry.apply_changes([change(prices_source, "data_source")], expected_version=1)
        version = registry.snapshot().version
        thread = registry._cache._thread
        results.put(("ok", thread is not None and thread.is_alive(), version))
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}", 0))


@pytest.mark.slow
def test_registry_survives_fork(open_registry: Callable[..., SqlRegistry]) -> None:
    registry = open_registry(cache_ttl_seconds=0.2, cache_mode="thread")
    registry.apply_changes([change(commodity, "entity")], expected_version=0)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_use_inherited, args=(registry, results))
    child.start()
    child.join(timeout=60)
    assert results.get(timeout=5) == ("ok", True, 2)
    # The parent's connections still work, and its refresher sees the child's apply.
    assert _wait_for(lambda: registry.snapshot().version == 2, 3.0) < 1.0
    assert registry.history("data_source", "prices_source")[0].version == 1


# -- connections ----------------------------------------------------------------------------------
def _terminate_registry_connections(postgres_server: str, url: str) -> int:
    database = sa.make_url(url).database
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND application_name = 'ladle-registry'"
            ),
            {"db": database},
        ).scalar()
    admin.dispose()
    return int(killed or 0)


@pytest.mark.postgres
@pytest.mark.parametrize("pre_ping", [True, False], ids=["pre-ping", "retry"])
def test_dropped_connection_is_retried(postgres_url: str, postgres_server: str, tmp_path: Path, pre_ping: bool) -> None:
    config = RegistryConfig(path=postgres_url, cache_mode="sync", sqlalchemy_config_kwargs={"pool_pre_ping": pre_ping})
    registry = SqlRegistry(config, "carbon", tmp_path)
    try:
        registry.apply_changes(base_changes(), expected_version=0)
        assert registry.snapshot(allow_cache=False).version == 1
        assert _terminate_registry_connections(postgres_server, postgres_url) >= 1
        # Without pre-ping the pooled connection is dead: the read fails once and is retried.
        assert registry.snapshot(allow_cache=False).feature_views.keys() == {"prices"}
        assert _terminate_registry_connections(postgres_server, postgres_url) >= 1
        assert [h.version for h in registry.history("feature_view", "prices")] == [1]
    finally:
        registry.close()
