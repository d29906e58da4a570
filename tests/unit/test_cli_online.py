"""``ladle get-online-features``, ``ladle materialize`` and ``ladle materialize-incremental`` (CliRunner)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from ladle import FeatureStore
from ladle.cli.main import cli

from .online_repo import T0, build


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    store = build(tmp_path)
    store.close()
    yield tmp_path


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--chdir", str(repo), *args], catch_exceptions=False)


def test_materialize_then_get_online_features(repo: Path) -> None:
    result = run(repo, "materialize", "2024-01-01T00:00:00", "2024-01-01T05:00:00Z", "-v", "live_prices", "-o", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # the progress bar goes to stderr
    assert rows == [
        {
            "view": "live_prices",
            "start": "2024-01-01T00:00:00+00:00",
            "end": "2024-01-01T05:00:00+00:00",
            "rows_read": 3,
            "rows_written": 3,
            "skipped": False,
        }
    ]
    result = run(
        repo,
        "get-online-features",
        "-f",
        "live_prices:price,live_prices:volume",
        "-e",
        "commodity_code=A",
        "-e",
        "commodity_code=Z",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row_a = next(line for line in lines if " A " in line)
    row_z = next(line for line in lines if " Z " in line)
    assert "5.0" in row_a and "500" in row_a
    assert "NOT_FOUND" in row_z


def test_json_output_is_feasts_shape(repo: Path) -> None:
    store = FeatureStore(repo_path=repo)
    store.materialize(T0, T0 + timedelta(hours=2), ["quotes", "live_prices"])
    store.close()
    result = run(
        repo, "get-online-features", "-f", "quotes:bid", "-f", "live_prices",
        "-e", "venue_id=2", "-e", "commodity_code=A", "--full-feature-names", "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    names = body["metadata"]["feature_names"]
    assert names == [
        "venue_id",
        "commodity_code",
        "quotes__bid",
        "live_prices__price",
        "live_prices__volume",
        "live_prices__note",
    ]
    by_name = dict(zip(names, body["results"], strict=True))
    assert by_name["venue_id"] == {"values": [2], "statuses": ["PRESENT"], "event_timestamps": ["1970-01-01T00:00:00Z"]}
    assert by_name["quotes__bid"]["values"] == [20.0]
    assert by_name["live_prices__price"] == {
        "values": [2.0], "statuses": ["PRESENT"], "event_timestamps": ["2024-01-01T02:00:00Z"],
    }  # fmt: skip


def test_materialize_incremental(repo: Path) -> None:
    first = run(repo, "materialize-incremental", "2024-01-01T03:00:00", "-v", "prices", "--no-progress", "-o", "json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)[0]["start"] == "2023-12-31T03:00:00+00:00"  # end - ttl (1 day)
    second = run(repo, "materialize-incremental", "2024-01-01T04:00:00", "-v", "prices", "--no-progress", "-o", "json")
    assert json.loads(second.output)[0]["start"] == "2024-01-01T03:00:00+00:00"


@pytest.mark.parametrize(
    "args",
    [
        ["get-online-features", "-f", "nope:price", "-e", "commodity_code=A"],
        ["get-online-features", "-f", "quotes:bid", "-e", "commodity_code=A", "-e", "venue_id=x"],
        ["get-online-features", "-f", "live_prices", "-e", "commodity_code"],
        ["get-online-features", "-f", "live_prices", "-e", "venue_id=1"],
        ["materialize", "2024-01-02", "2024-01-01"],
        ["materialize", "soon", "2024-01-01"],
        ["materialize", "2024-01-01", "2024-01-02", "-v", "nope"],
        ["materialize-incremental", "later"],
    ],
)
def test_user_errors_exit_1_with_a_message(repo: Path, args: list[str]) -> None:
    result = run(repo, *args)
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert FeatureStore(repo_path=repo).registry.watermarks() == {}


def test_commands_are_registered() -> None:
    names = set(cli.list_commands(click.Context(cli)))
    assert {"get-online-features", "materialize", "materialize-incremental"} <= names
