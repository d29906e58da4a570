"""The freshness CronJob's container, run as rendered against the platform's three views (like tests/deploy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.manifests import containers_of, render
from deploy.test_jobs_run import repo, run_here  # noqa: F401  (the repo fixture: platform views, real schedules.py)
from ladle.registry.reports import ReportJournal
from ladle.store import FeatureStore

pytestmark = pytest.mark.deploy


def test_the_freshness_cronjob_reports_every_platform_view(repo: Path) -> None:  # noqa: F811
    objects = render("prod")
    (apply,) = containers_of(objects, "Job", "ladle-apply")
    run_here(apply, repo)
    (hourly,) = containers_of(objects, "CronJob", "ladle-materialize-hourly")
    run_here(hourly, repo)  # prices and weather of the last 2 hours go online; economic stays offline only
    (check,) = containers_of(objects, "CronJob", "ladle-monitor-freshness")
    run_here(check, repo)
    store = FeatureStore(repo_path=repo)
    journal = ReportJournal.open(store.config.registry, store.project, store.repo_path)
    try:
        latest = journal.latest("freshness")
    finally:
        journal.close()
        store.close()
    assert set(latest) == {"commodity_price_features", "weather_features", "economic_features"}
    prices = latest["commodity_price_features"].payload["views"]["commodity_price_features"]
    assert prices["judged_on"] == "online" and prices["age_seconds"] < 2 * 3600
    economic = latest["economic_features"].payload["views"]["economic_features"]
    assert economic["online"]["newest_event"] is None and economic["offline"]["newest_event"] is not None
