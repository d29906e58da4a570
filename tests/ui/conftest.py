"""The commodity repo applied into a temp registry, with history the UI shows (versions, runs, reports)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ladle.cli.main import cli
from ladle.registry.base import ObjectChange
from ladle.registry.engine import Database
from ladle.registry.schedule_runs import ScheduleJournal
from ladle.registry.stream_sessions import StreamSessions
from ladle.store import FeatureStore
from ui.monitor_history import MonitorRuns, run_monitors

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def applied_commodity_repo(path: Path) -> Path:
    """``feature_repo/`` copied to ``path`` and applied (sources are not read: the UI needs none)."""
    shutil.copytree(ROOT / "feature_repo", path, ignore=shutil.ignore_patterns("data", "__pycache__"))
    result = CliRunner().invoke(
        cli, ["-c", str(path), "apply", "--skip-source-validation"], env={"LADLE_DATA_DIR": str(ROOT / "data")}
    )
    assert result.exit_code == 0, result.output
    return path


@dataclass
class Recorded:
    """What the fixture wrote, to compare the pages with."""

    repo: Path
    failed_run_detail: str
    monitors: MonitorRuns

    @property
    def drift_ids(self) -> list[int]:
        """The drift reports the monitor stored, oldest first (ok, not judged, breach)."""
        return self.monitors.drift_ids


def record_history(repo: Path) -> Recorded:
    """A second version of weather_features, job runs of every kind, and reports of the real monitors."""
    store = FeatureStore(repo_path=repo)
    registry = store.registry
    spec = dict(registry.history("feature_view", "weather_features")[-1].spec or {})
    spec["tags"] = {**spec.get("tags", {}), "tier": "gold"}
    spec["ttl_seconds"] = 7200.0
    spec["features"] = [*spec["features"], {"name": "uv_index", "dtype": "Float64"}]
    registry.apply_changes(
        [ObjectChange("feature_view", "weather_features", spec)], expected_version=registry.version()
    )
    run = registry.begin_run("commodity_price_features", T0 - timedelta(days=1), T0)  # type: ignore[attr-defined]
    registry.finish_run(run, "succeeded", rows=1234)  # type: ignore[attr-defined]
    registry.record_materialization("commodity_price_features", T0 - timedelta(days=1), T0, 1234)
    run = registry.begin_run("economic_features", T0 - timedelta(days=1), T0)  # type: ignore[attr-defined]
    detail = "DataSourceError: economic.parquet is missing"
    registry.finish_run(run, "failed", rows=0, detail=detail)  # type: ignore[attr-defined]
    db = Database(store.config.registry, repo)
    schedules = ScheduleJournal(db, store.project)
    fire = schedules.start(
        "hourly_prices_weather", "scheduled", T0, (T0 - timedelta(hours=2), T0),
        ["commodity_price_features", "weather_features"], "test", T0,
    )  # fmt: skip
    schedules.finish(fire, "succeeded", T0 + timedelta(seconds=3), 3.0)
    streams = StreamSessions(db, store.project)
    streams.finish(streams.begin(["commodity_price_stream"], owner="test"), "stopped", 420)
    db.close()
    store.close()
    return Recorded(repo, detail, run_monitors(repo))


@pytest.fixture(scope="session")
def commodity(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """The applied commodity repo with its recorded history (shared: every UI test only reads it)."""
    return record_history(applied_commodity_repo(tmp_path_factory.mktemp("ui") / "repo"))
