"""``ladle schedule`` through click's runner: argument handling, errors and ``--list``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from ladle.cli.main import cli

SCHEDULES = """
    from datetime import timedelta
    from ladle.schedule import DEFAULT_SCHEDULES, Schedule

    nightly = Schedule(name="nightly", cron="0 3 * * *", feature_views=["prices"], lookback=timedelta(days=1))
"""


def make_repo(root: Path, schedules: str = SCHEDULES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "feature_store.yaml").write_text(
        "project: sched_cli\nregistry:\n  path: data/registry.db\n  cache_ttl_seconds: 0\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\noffline_store:\n  type: duckdb\n"
    )
    (root / "schedules.py").write_text(textwrap.dedent(schedules))
    return root


def invoke(repo: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--chdir", str(repo), "schedule", *args])
    return result.exit_code, result.stdout, result.stderr


def test_unknown_schedule_is_one_readable_line_and_exit_1(tmp_path: Path) -> None:
    code, out, err = invoke(make_repo(tmp_path), "--once", "hourly_price_weather")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0] == (
        "Error: ScheduleNotFoundError: schedule 'hourly_price_weather' does not exist. "
        "Declared schedules: daily_economic, hourly_prices_weather, nightly"
    )


def test_once_and_list_together_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = invoke(make_repo(tmp_path), "--once", "nightly", "--list")
    assert code == 2 and "use either --once NAME or --list" in err


def test_once_with_views_never_applied_says_so(tmp_path: Path) -> None:
    code, _, err = invoke(make_repo(tmp_path), "--once", "nightly")
    assert code == 1
    assert "FeatureViewNotFoundError: feature view 'prices' does not exist in project 'sched_cli'" in err
    assert "run 'ladle apply' first" in err


def test_running_with_no_schedules_declared_is_an_error(tmp_path: Path) -> None:
    code, _, err = invoke(make_repo(tmp_path, "x = 1\n"))
    assert code == 1 and "RepoError: no schedules are declared" in err


def test_list_shows_every_schedule_with_its_next_run(tmp_path: Path) -> None:
    code, out, err = invoke(make_repo(tmp_path), "--list", "-o", "json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert sorted(rows) == ["daily_economic", "hourly_prices_weather", "nightly"]
    hourly = rows["hourly_prices_weather"]
    assert hourly["cron"] == "5 * * * *" and hourly["lookback_seconds"] == 7200
    assert hourly["next_run"].endswith(":05:00+00:00") and hourly["last_run"] is None
    assert rows["nightly"]["next_run"].endswith("T03:00:00+00:00")

    code, out, _ = invoke(make_repo(tmp_path), "--list")
    assert code == 0 and "nightly" in out and "never" in out  # the table wraps cells at 80 columns


def test_a_broken_repo_is_reported_not_raised(tmp_path: Path) -> None:
    code, _, err = invoke(make_repo(tmp_path, "raise ValueError('boom')\n"), "--list")
    assert code == 1 and "RepoError: cannot load feature repo: schedules.py:1: ValueError: boom" in err


@pytest.mark.parametrize("flag", ["--help"])
def test_help_documents_the_options(flag: str) -> None:
    result = CliRunner().invoke(cli, ["schedule", flag])
    assert result.exit_code == 0
    for option in ("--once NAME", "--list", "--metrics-port", "--output"):
        assert option in result.stdout
