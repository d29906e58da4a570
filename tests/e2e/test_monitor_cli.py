"""``ladle monitor`` through the CLI runner on a real repo: exit 0 when quiet, 2 past a threshold, 1 on bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from ladle import FeatureStore
from ladle.cli.main import cli
from unit.drift_repo import T0, build, reading_rows, readings

CALM = T0 + timedelta(days=10)
SHIFTED = T0 + timedelta(days=20)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitor_cli")
    base = reading_rows(T0, 1000, seed=1)
    store: FeatureStore = build(root, base)
    store.offline_store.append(readings.batch_source, reading_rows(CALM, 400, seed=2))
    store.offline_store.append(readings.batch_source, reading_rows(SHIFTED, 400, seed=3, mu=1.0))
    store.materialize(T0, SHIFTED + timedelta(days=1))
    store.close()
    pq.write_table(base.select(["sensor_id", "event_timestamp"]), root / "training_entities.parquet")
    return root


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-c", str(repo), "monitor", *args])


def test_monitor_commands_end_to_end(repo: Path) -> None:
    saved = run(repo, "baseline", "--name", "b1", "--feature-service", "readings_model", "--entity-df",
                str(repo / "training_entities.parquet"), "-o", "json")  # fmt: skip
    assert saved.exit_code == 0, saved.output
    assert {row["feature"] for row in json.loads(saved.output)} == {"readings:level", "readings:count", "readings:kind"}
    assert "b1" in run(repo, "baselines").output

    calm_end = (CALM + timedelta(minutes=400)).isoformat()
    calm = run(repo, "drift", "--baseline", "b1", "--start", CALM.isoformat(), "--end", calm_end)
    assert calm.exit_code == 0, calm.output
    assert "readings:level" in calm.output and ": ok" in calm.output

    end = (SHIFTED + timedelta(minutes=400)).isoformat()
    shifted = run(repo, "drift", "--baseline", "b1", "--end", end, "--last", "400m", "-o", "json")
    assert shifted.exit_code == 2, shifted.output
    [report] = json.loads(shifted.output)
    assert report["status"] == "breach" and report["features"]["readings:level"]["breach"]
    assert not report["features"]["readings:kind"]["breach"]  # only level was shifted

    audit = run(repo, "skew", "readings", "--sample", "20", "--seed", "1")
    assert audit.exit_code == 0, audit.output
    assert "20 entities sampled" in audit.output

    stale = run(repo, "freshness")  # the data is from 2024: far past the 1 h SLO
    assert stale.exit_code == 2 and "BREACH" in stale.output

    history = run(repo, "reports", "-o", "json")
    kinds = [r["kind"] for r in json.loads(history.output)]
    assert kinds.count("drift") == 2 and kinds.count("skew") == 1 and kinds.count("freshness") == 1


def test_bad_input_is_one_line_and_exit_1(repo: Path) -> None:
    missing = run(repo, "drift", "--baseline", "nope")
    assert missing.exit_code == 1
    assert "drift baseline 'nope' does not exist" in missing.output and "Traceback" not in missing.output
    backwards = run(repo, "drift", "--baseline", "b1", "--start", "2024-02-01", "--end", "2024-01-01")
    assert backwards.exit_code == 1 and "window is empty" in backwards.output
    assert run(repo, "drift", "--baseline", "b1", "--last", "soon").exit_code == 1
    unknown = run(repo, "skew", "nope")
    assert unknown.exit_code == 1 and "nope" in unknown.output
    both = run(repo, "baseline", "--name", "x", "--entity-df", "e.parquet")
    assert both.exit_code == 2 and "--feature-service" in both.output  # a usage error
