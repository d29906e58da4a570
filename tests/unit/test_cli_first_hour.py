"""A newcomer's first hour: plain messages, no progress-bar clutter in logs, whole names in piped tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ladle.cli.main import cli

from .online_repo import build


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    store = build(tmp_path)
    store.close()
    yield tmp_path


def run(repo: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--chdir", str(repo), *args])
    assert "Traceback" not in result.output
    return result


def test_materialize_off_a_terminal_draws_no_bar(repo: Path) -> None:
    result = run(repo, "materialize", "2024-01-01T00:00:00", "2024-01-01T05:00:00Z", "-v", "live_prices")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    assert "materialize live_prices" not in result.stderr  # the bar's label
    forced = run(repo, "materialize", "2024-01-01", "2024-01-02", "-v", "live_prices", "--progress")
    assert "materialize live_prices" in forced.stderr


def test_incremental_past_the_watermark_says_there_is_nothing_to_do(repo: Path) -> None:
    assert run(repo, "materialize-incremental", "2024-01-01T04:00:00", "-v", "prices").exit_code == 0
    result = run(repo, "materialize-incremental", "2024-01-01T02:00:00", "-v", "prices")
    assert result.exit_code == 0, result.output
    assert (
        "prices: up to date: watermark 2024-01-01T04:00:00+00:00 is not before end 2024-01-01T02:00:00+00:00; "
        "nothing to materialize"
    ) in result.stderr
    assert "2024-01-01T04:00:00+00:00 │ 2024-01-01T02:00:00" not in result.output  # no window with start > end
    as_json = run(repo, "materialize-incremental", "2024-01-01T02:00:00", "-v", "prices", "-o", "json")
    assert json.loads(as_json.stdout)[0]["skipped"] is True


def test_piped_tables_keep_long_names_whole(tmp_path: Path) -> None:
    name = "a_feature_view_with_a_name_far_longer_than_an_eighty_column_terminal_would_ever_show_in_full"
    result = run(tmp_path, "init", "demo")
    assert result.exit_code == 0, result.output
    repo = tmp_path / "demo"
    source = repo / "example_repo.py"
    source.write_text(source.read_text().replace('"commodity_price_features"', f'"{name}"'))
    assert run(repo, "apply").exit_code == 0
    listed = run(repo, "feature-views", "list")
    assert name in listed.output
    assert "…" not in listed.output


def test_historical_off_a_terminal_draws_no_bar(repo: Path) -> None:
    (repo / "entities.csv").write_text("commodity_code,event_timestamp\nA,2024-01-01T03:30:00Z\n")
    out = repo / "out.parquet"
    args = ["get-historical-features", "-d", str(repo / "entities.csv"), "-f", "prices:price", "-o", str(out)]
    result = run(repo, *args)
    assert result.exit_code == 0, result.output
    assert out.is_file() and "\r" not in result.output
    assert "point-in-time join" not in result.stderr
    assert "point-in-time join" in run(repo, *args, "--progress").stderr


def test_a_bad_entity_timestamp_is_one_line_naming_the_format(repo: Path) -> None:
    (repo / "entities.csv").write_text("commodity_code,event_timestamp\nA,2024-01-01T03:30:00Z\nA,2024-13-01\n")
    args = ["get-historical-features", "-d", str(repo / "entities.csv"), "-f", "prices:price", "-o", "x.parquet"]
    line = one_line(run(repo, *args))
    assert "'event_timestamp' has values that are not timestamps" in line
    assert "2024-13-01" in line and "ISO 8601 times such as 2024-01-31T00:00:00Z" in line


@pytest.mark.parametrize("args", [["materialize", "2024-13-01", "now"], ["materialize-incremental", "31/01/2024"]])
def test_a_bad_materialize_time_is_one_line(repo: Path, args: list[str]) -> None:
    assert "is not an ISO 8601 time, e.g. 2024-01-06T00:00:00Z" in one_line(run(repo, *args))


def one_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]
