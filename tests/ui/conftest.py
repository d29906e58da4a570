"""The commodity repo applied into a temp registry, with history the UI shows (versions, runs, reports)."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ladle.cli.main import cli
from ladle.registry.base import ObjectChange
from ladle.registry.engine import Database
from ladle.registry.reports import ReportJournal
from ladle.registry.schedule_runs import ScheduleJournal
from ladle.registry.stream_sessions import StreamSessions
from ladle.store import FeatureStore

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


def drift_payload(shift: float) -> dict[str, Any]:
    """A drift report body in the agreed shape; ``shift`` moves the current distribution."""
    base = [5, 20, 40, 25, 10]
    current = [max(0, round(b + shift * (i - 2) * 6)) for i, b in enumerate(base)]
    psi = round(0.02 + shift * 0.3, 4)
    return {
        "features": {
            "current_price": {
                "type": "numeric", "psi": psi, "ks": round(0.05 + shift * 0.2, 4), "chi2_p": None,
                "null_rate": {"baseline": 0.0, "current": 0.01},
                "range": {"baseline": [50.0, 120.0], "current": [55.0, 140.0]},
                "thresholds": {"psi": 0.2, "ks": 0.1}, "breach": psi > 0.2,
                "bins": {"edges": [50, 64, 78, 92, 106, 120], "baseline": base, "current": current},
            },
            "volume_24h": {
                "type": "categorical", "psi": 0.01, "ks": None, "chi2_p": 0.8,
                "null_rate": {"baseline": 0.0, "current": 0.0},
                "range": {"baseline": [0, 1], "current": [0, 1]}, "thresholds": {"psi": 0.2}, "breach": False,
                "bins": {"categories": ["low", "mid", "high"], "baseline": [30, 50, 20], "current": [28, 52, 20]},
            },
        }
    }  # fmt: skip


@dataclass
class Recorded:
    """What the fixture wrote, to compare the pages with."""

    repo: Path
    failed_run_detail: str
    drift_ids: list[int]


def record_history(repo: Path) -> Recorded:
    """A second version of weather_features, job runs of every kind and monitoring reports, all real writes."""
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
    reports = ReportJournal(db, store.project)
    window = {"window_start": T0 - timedelta(days=7), "window_end": T0}
    drift_ids = [
        reports.record("drift", "commodity_price_features", "ok", drift_payload(0.1), created_at=T0, **window),
        reports.record("drift", "commodity_price_features", "breach", drift_payload(1.0),
                       created_at=T0 + timedelta(hours=1), **window),
    ]  # fmt: skip
    skew = {"sampled": 200, "features": {"current_price": {"compared": 200, "mismatches": 3, "rate": 0.015}},
            "examples": [{"commodity_code": "brent", "online": 81.2, "offline": 80.9}]}  # fmt: skip
    reports.record("skew", "commodity_price_features", "ok", skew, created_at=T0)
    prices = {"newest_event": T0.isoformat(), "age_seconds": 600, "slo_seconds": 3600, "breach": False}
    economic = {"newest_event": None, "age_seconds": None, "slo_seconds": 86400, "breach": True}
    freshness = {"views": {"commodity_price_features": prices, "economic_features": economic}}
    reports.record("freshness", "commodity_analytics", "breach", freshness, created_at=T0)
    db.close()
    store.close()
    return Recorded(repo, detail, drift_ids)


@pytest.fixture(scope="session")
def commodity(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """The applied commodity repo with its recorded history (shared: every UI test only reads it)."""
    return record_history(applied_commodity_repo(tmp_path_factory.mktemp("ui") / "repo"))


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
