"""``ladle ingest``: repo-declared ingestions, checked against their view, written idempotently."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ladle.cli.main import cli

REPO = """
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.ingest import Ingestion

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
source = FileSource(name="prices_source", path="data/prices/", timestamp_field="event_timestamp",
                    created_timestamp_column="created")
prices = FeatureView(name="prices", entities=[commodity], source=source,
                     schema=[Field(name="current_price", dtype=Float64)])
T0 = datetime(2024, 1, 30, tzinfo=UTC)


def rows(window):
    ts = pa.array([T0 + timedelta(days=d) for d in range(5)], pa.timestamp("us", tz="UTC"))
    return pa.table({"commodity_code": ["wti"] * 5, "event_timestamp": ts, "created": ts,
                     "current_price": [70.0 + d for d in range(5)]})


def bad_rows(window):
    return rows(window).drop_columns(["current_price"])


good = Ingestion(name="good", feature_view="prices", compute=rows)
broken = Ingestion(name="broken", feature_view="prices", compute=bad_rows)
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "feature_store.yaml").write_text(
        "project: ingest_test\nregistry: data/registry.db\nonline_store:\n  type: sqlite\n  path: data/online.db\n"
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(REPO))
    return tmp_path


def run(repo: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(repo), "ingest", *args])
    return result.exit_code, result.output


def stored_rows(repo: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in (repo / "data" / "prices").glob("*.parquet"))


def test_ingest_before_apply_writes_month_partitions_and_reruns_add_nothing(repo: Path) -> None:
    code, out = run(repo, "good", "-o", "json")
    assert code == 0, out
    assert sorted(p.name for p in (repo / "data" / "prices").glob("*.parquet")) == [
        "good-2024-01.parquet", "good-2024-02.parquet",
    ]  # fmt: skip
    assert stored_rows(repo) == 5
    assert run(repo, "good")[0] == 0
    assert stored_rows(repo) == 5


def test_a_window_rewrites_only_that_window(repo: Path) -> None:
    run(repo, "good")
    code, out = run(repo, "good", "--start", "2024-02-01", "--end", "2024-02-02", "-o", "json")
    assert code == 0 and '"rows": 1' in out, out
    assert stored_rows(repo) == 5


def test_rows_that_do_not_match_the_view_are_refused_and_nothing_is_written(repo: Path) -> None:
    code, out = run(repo, "broken")
    assert code == 1 and "SchemaMismatchError" in out and "current_price" in out, out
    assert not (repo / "data" / "prices").exists() or stored_rows(repo) == 0


def test_unknown_names_and_bad_windows_are_one_line_errors(repo: Path) -> None:
    code, out = run(repo, "nope")
    assert code == 1 and "ingestion 'nope' does not exist" in out and "good" in out, out
    code, out = run(repo, "good", "--start", "2024-02-02", "--end", "2024-02-01")
    assert code == 1 and "is not before" in out, out
    code, out = run(repo, "good", "--start", "yesterday")
    assert code == 1 and "ISO 8601" in out, out
    assert len(out.strip().splitlines()) == 1


def test_list_shows_the_declared_ingestions(repo: Path) -> None:
    code, out = run(repo, "--list", "-o", "json")
    assert code == 0 and '"name": "broken"' in out and '"name": "good"' in out, out
