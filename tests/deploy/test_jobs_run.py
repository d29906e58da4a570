"""The init Job's and the CronJobs' containers, run as rendered (paths pointed at a small repo).

The repo holds the platform's three views over small Parquet files and a copy of the real
``feature_repo/schedules.py``; rows sit inside and outside each CronJob's window (relative to now),
so the online store shows which window each job really materialized.
"""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from deploy.manifests import ROOT, Container, containers_of, render
from e2e.test_schedule_e2e import VIEWS, table
from ladle.cli.main import cli
from ladle.store import FeatureStore

pytestmark = pytest.mark.deploy


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    now = datetime.now(UTC).replace(microsecond=0)
    (tmp_path / "data").mkdir()
    (tmp_path / "feature_store.yaml").write_text(
        "project: deploy_jobs\nregistry:\n  path: data/registry.db\n  cache_ttl_seconds: 0\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\noffline_store:\n  type: duckdb\n"
    )
    (tmp_path / "views.py").write_text(textwrap.dedent(VIEWS))
    shutil.copy(ROOT / "feature_repo" / "schedules.py", tmp_path / "schedules.py")
    prices = [("in_2h", now - timedelta(hours=1), 1.0), ("out_2h", now - timedelta(hours=3), 2.0)]
    weather = [("in_2h", now - timedelta(minutes=100), 10.0), ("out_2h", now - timedelta(minutes=140), 20.0)]
    economic = [("in_7d", now - timedelta(days=6), 2.5), ("out_7d", now - timedelta(days=8), 0.5)]
    pq.write_table(table("commodity_code", "current_price", prices), tmp_path / "data" / "prices.parquet")
    pq.write_table(table("location_id", "temperature_avg", weather), tmp_path / "data" / "weather.parquet")
    pq.write_table(table("country_code", "gdp_growth", economic), tmp_path / "data" / "economic.parquet")
    return tmp_path


def run_here(container: Container, repo: Path) -> None:
    """Run the container's arguments with ``ladle``, its repo and config paths pointed at ``repo``."""
    places = {"/app/feature_repo": str(repo), "/etc/ladle/feature_store.yaml": str(repo / "feature_store.yaml")}
    args = [places.get(a, a) for a in container.args]
    assert args != container.args, "the container does not name the image's repo and config paths"
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, f"{container.owner}: ladle {' '.join(args)}\n{result.output}"


def online(repo: Path, view: str, feature: str, key: str, ids: list[str]) -> list[object]:
    store = FeatureStore(repo_path=repo)
    try:
        return list(store.get_online_features([f"{view}:{feature}"], [{key: i} for i in ids]).to_dict()[feature])
    finally:
        store.close()


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_apply_then_the_cronjobs_materialize_their_windows(repo: Path, target: str) -> None:
    objects = render(target)
    (apply,) = containers_of(objects, "Job", "ladle-apply")
    run_here(apply, repo)
    prices = ("commodity_price_features", "current_price", "commodity_code", ["in_2h", "out_2h"])
    weather = ("weather_features", "temperature_avg", "location_id", ["in_2h", "out_2h"])
    economic = ("economic_features", "gdp_growth", "country_code", ["in_7d", "out_7d"])
    assert online(repo, *prices) == [None, None]

    (hourly,) = containers_of(objects, "CronJob", "ladle-materialize-hourly")
    run_here(hourly, repo)  # the last 2 hours of prices and weather
    assert online(repo, *prices) == [1.0, None]
    assert online(repo, *weather) == [10.0, None]
    assert online(repo, *economic) == [None, None]

    (daily,) = containers_of(objects, "CronJob", "ladle-materialize-daily")
    run_here(daily, repo)  # the last 7 days of economic data
    assert online(repo, *economic) == [2.5, None]
    assert online(repo, *prices) == [1.0, None]
