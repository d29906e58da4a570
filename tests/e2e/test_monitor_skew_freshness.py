"""Skew audit and freshness SLOs on real stores: Parquet + DuckDB offline, SQLite online (and once Redis)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ladle import FeatureStore, FeatureView, FileSource
from ladle.errors import DefinitionError, FeatureViewNotFoundError
from ladle.monitor.freshness import SLO_TAG, check_freshness, parse_duration, slo_tag, view_slo
from ladle.monitor.skew import audit_skew
from ladle.registry.reports import ReportJournal
from unit.drift_repo import T0, build, monitor_sample, reading_rows

ROWS = 500  # 50 sensors x 10 readings, a minute apart
NEWEST = T0 + timedelta(minutes=ROWS - 1)
PLANTED = (3, 17, 42)


def _materialized(root: Path, online: dict[str, str] | None = None) -> FeatureStore:
    store = build(root, reading_rows(T0, ROWS, seed=5), online)
    store.materialize(T0, NEWEST)
    return store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[FeatureStore]:
    store = _materialized(tmp_path)
    yield store
    store.close()


@pytest.fixture
def redis_store(tmp_path: Path, redis_address: str) -> Iterator[FeatureStore]:
    store = _materialized(tmp_path, {"type": "redis", "connection_string": redis_address})
    yield store
    store.teardown()
    store.close()


def _plant(store: FeatureStore) -> None:
    """Online only: a different level for three sensors, one second newer than their latest offline row."""
    latest = reading_rows(T0, ROWS, seed=5).filter(pc.is_in(pc.field("sensor_id"), pa.array(PLANTED, pa.int64())))
    latest = latest.filter(
        pc.field("event_timestamp")
        >= pa.scalar(NEWEST - timedelta(minutes=49), latest.schema.field("event_timestamp").type)
    )
    assert latest.num_rows == len(PLANTED)
    planted = latest.set_column(
        1, "event_timestamp", pc.add(latest.column("event_timestamp"), pa.scalar(1_000_000, pa.duration("us")))
    )
    planted = planted.set_column(2, "level", pc.add(planted.column("level"), 0.5))
    store.write_to_online_store("readings", planted)


def _check_audit_finds_planted_rows(store: FeatureStore) -> None:
    clean = audit_skew(store, "readings", sample=50, seed=11)
    assert clean.ok and clean.payload["sampled"] == 50
    assert {f["mismatches"] for f in clean.payload["features"].values()} == {0}
    _plant(store)
    found = audit_skew(store, "readings", sample=50, seed=11)
    assert found.status == "breach"
    assert {m["entity"]["sensor_id"] for m in found.mismatches} == set(PLANTED)
    assert {m["feature"] for m in found.mismatches} == {"level"}
    rates = {ref: f["rate"] for ref, f in found.payload["features"].items()}
    assert rates == {"readings:level": 3 / 50, "readings:count": 0.0, "readings:kind": 0.0}
    example = found.payload["examples"][0]
    assert example["online"] == pytest.approx(example["offline"] + 0.5)
    assert monitor_sample(store, "ladle_online_offline_skew_rate", view="readings", feature="level") == 3 / 50


def test_skew_audit_finds_exactly_the_planted_rows(sqlite_store: FeatureStore) -> None:
    _check_audit_finds_planted_rows(sqlite_store)
    # The feature service audits its views the same way; both runs are stored as skew reports.
    by_service = audit_skew(sqlite_store, "readings_model", sample=10, seed=2)
    assert by_service.payload["sampled"] == 10
    journal = ReportJournal.open(sqlite_store.config.registry, sqlite_store.project, sqlite_store.repo_path)
    try:
        assert [r.subject for r in journal.reports("skew")] == ["readings_model", "readings", "readings"]
    finally:
        journal.close()


@pytest.mark.redis
def test_skew_audit_on_redis(redis_store: FeatureStore) -> None:
    _check_audit_finds_planted_rows(redis_store)


def test_skew_audit_rejects_unknown_targets(sqlite_store: FeatureStore) -> None:
    with pytest.raises(FeatureViewNotFoundError, match="nope"):
        audit_skew(sqlite_store, "nope")


def test_freshness_flags_a_stale_view(sqlite_store: FeatureStore) -> None:
    fresh = check_freshness(sqlite_store, ["readings"], now=NEWEST + timedelta(minutes=10))
    [view] = fresh
    assert view.judged_on == "online" and view.slo == timedelta(hours=1)
    assert view.newest_online == NEWEST and view.newest_offline == NEWEST
    assert view.age_seconds == 600 and not view.breach
    [stale] = check_freshness(sqlite_store, ["readings"], now=NEWEST + timedelta(hours=2))
    assert stale.breach and stale.to_payload()["slo_seconds"] == 3600
    # Scraped now (years after NEWEST), the age keeps growing from the reported newest event.
    assert monitor_sample(sqlite_store, "ladle_feature_freshness_slo_breach", view="readings") == 1.0
    age = monitor_sample(sqlite_store, "ladle_feature_freshness_age_seconds", view="readings")
    assert age is not None and age > (datetime.now(UTC) - NEWEST).total_seconds() - 60
    journal = ReportJournal.open(sqlite_store.config.registry, sqlite_store.project, sqlite_store.repo_path)
    try:
        newest = journal.latest("freshness")["readings"]
    finally:
        journal.close()
    assert newest.status == "breach"
    assert newest.payload["views"]["readings"]["age_seconds"] == 7200


def test_freshness_judges_what_is_served(tmp_path: Path) -> None:
    """Offline is fresh but nothing was materialized: the view breaches on its (missing) online events."""
    store = build(tmp_path, reading_rows(T0, ROWS, seed=5))
    try:
        [view] = check_freshness(store, ["readings"], now=NEWEST, record=False)
    finally:
        store.close()
    assert view.newest_offline == NEWEST and view.newest_online is None and view.breach


def test_durations_and_slo_tags() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert slo_tag(timedelta(hours=3)) == {"ladle.freshness_slo": "10800s"}
    for bad in ("soon", "1h garbage", "-5", "0s"):
        with pytest.raises(DefinitionError):
            parse_duration(bad)
    with pytest.raises(DefinitionError):
        slo_tag(timedelta(0))
    view = FeatureView(
        name="v", source=FileSource(name="s", path="x.parquet", timestamp_field="ts"), tags={SLO_TAG: "soonish"}
    )
    with pytest.raises(DefinitionError, match=r"feature view 'v': tag ladle\.freshness_slo"):
        view_slo(view, None)
    assert view_slo(FeatureView(name="w", source=view.source), 60.0) == timedelta(minutes=1)  # the config default
    assert view_slo(FeatureView(name="w", source=view.source), None) is None


def test_the_feature_server_exports_the_stored_reports(sqlite_store: FeatureStore) -> None:
    """A check run elsewhere (another process, a CronJob) shows on the server's /metrics."""
    from ladle.server.rest import create_app

    with warnings.catch_warnings():  # starlette asks for httpx2 here; the plain httpx client is what we have
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient

    check_freshness(sqlite_store, ["readings"], now=NEWEST + timedelta(minutes=10))
    audit_skew(sqlite_store, "readings", sample=5, seed=3)
    with TestClient(create_app(sqlite_store)) as client:
        text = client.get("/metrics").text
    project = sqlite_store.project
    assert f'ladle_feature_freshness_slo_breach{{project="{project}",view="readings"}} 1.0' in text
    assert f'ladle_online_offline_skew_rate{{feature="level",project="{project}",view="readings"}} 0.0' in text
