"""Monitor schedules run by the real scheduler (simulated clock) on a real repo: reports stored, runs journaled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from ladle import FeatureStore
from ladle.errors import DefinitionError
from ladle.registry.reports import ReportJournal
from ladle.schedule import ManualClock, MonitorSchedule, Scheduler, collect_schedules
from unit.drift_repo import T0, build, reading_rows, readings

SHIFTED = T0 + timedelta(days=3)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    base = reading_rows(T0, 600, seed=1)
    store = build(tmp_path, base)
    store.offline_store.append(readings.batch_source, reading_rows(SHIFTED - timedelta(hours=2), 120, seed=2, mu=2.0))
    store.materialize(T0, SHIFTED)
    job = store.get_historical_features(base.select(["sensor_id", "event_timestamp"]), feature_service="readings_model")
    store.save_drift_baseline(job, "b1", features="readings_model")
    yield store
    store.close()


SCHEDULES = [
    MonitorSchedule(name="drift_2h", cron="0 * * * *", check="drift", feature_views=["readings"], baseline="b1",
                    lookback=timedelta(hours=2)),
    MonitorSchedule(name="skew_hourly", cron="0 * * * *", check="skew", feature_views=["readings"], sample=20),
    MonitorSchedule(name="fresh_hourly", cron="0 * * * *", check="freshness", feature_views=["readings"]),
    MonitorSchedule(name="drift_missing", cron="0 * * * *", check="drift", feature_views=["readings"], baseline="nope"),
]  # fmt: skip


def test_scheduled_checks_store_reports_and_journal_runs(store: FeatureStore) -> None:
    clock = ManualClock(SHIFTED + timedelta(minutes=5))
    scheduler = Scheduler(store, SCHEDULES, clock=clock)
    try:
        results = {
            name: scheduler.run_once(name) for name in ("drift_2h", "skew_hourly", "fresh_hourly", "drift_missing")
        }
        runs = scheduler.journal.runs("drift_2h")
    finally:
        scheduler.close()
    assert results["drift_2h"].ok and results["skew_hourly"].ok and results["fresh_hourly"].ok
    # A check that cannot be made fails its run (and is retried); a breach is a finding, not a failure.
    missing = results["drift_missing"]
    assert not missing.ok and "drift baseline 'nope' does not exist" in missing.detail
    assert [r.status for r in runs] == ["succeeded"]
    journal = ReportJournal.open(store.config.registry, store.project, store.repo_path)
    try:
        drift = journal.latest("drift")["readings"]
        fresh = journal.latest("freshness")["readings"]
        skew = journal.latest("skew")["readings"]
    finally:
        journal.close()
    # The window of the fire is [now - 2 h, now]: the shifted rows, so the level drifted.
    assert drift.status == "breach" and drift.window_end == clock.now().replace(microsecond=0)
    assert drift.payload["features"]["readings:level"]["breach"]
    assert fresh.status == "ok" and fresh.payload["views"]["readings"]["age_seconds"] < 3600
    assert skew.status == "ok" and skew.payload["sampled"] == 20


def test_monitor_schedules_are_declared_like_schedules(tmp_path: Path) -> None:
    (tmp_path / "monitors.py").write_text(
        "from datetime import timedelta\nfrom ladle.schedule import MonitorSchedule\n"
        "FRESH = MonitorSchedule(name='fresh', cron='*/10 * * * *', check='freshness', feature_views=['v'])\n"
    )
    [found] = collect_schedules(tmp_path)
    assert isinstance(found, MonitorSchedule) and found.catch_up == "latest"
    assert MonitorSchedule.from_spec(found.to_spec()) == found
    with pytest.raises(DefinitionError, match="baseline"):
        MonitorSchedule(name="d", cron="* * * * *", check="drift", feature_views=["v"])
    with pytest.raises(DefinitionError, match="check must be"):
        MonitorSchedule(name="d", cron="* * * * *", check="size", feature_views=["v"])  # type: ignore[arg-type]
