"""``bench.w1_materialize --engine ray`` end to end on a local Ray (2 CPUs), W1a into SQLite: the run
reports its Ray tasks (one per CPU, together every entity, each in its own worker), the peak RSS of
the driver plus the workers, and reads back what it wrote. No speed is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.data import ensure_ticks
from bench.w1_materialize import main

from conftest import require_module

pytestmark = pytest.mark.ray


def test_w1a_on_ray_reports_its_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_module("ray", "the ray extra is not installed: the bench's Ray engine cannot run")
    ensure_ticks(tmp_path)
    argv = ["--data", str(tmp_path), "--workload", "w1a", "--backend", "sqlite", "--engine", "ray"]
    assert main([*argv, "--repeat", "1", "--verify", "200", "--memory-budget", "512MB"]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert result["engine"] == "ray" and result["mismatches"] == 0 and result["rows_written"] == 10_000
    tasks = result["tasks"]
    assert len(tasks) == 2 and len({t["pid"] for t in tasks}) == 2  # one task per worker
    assert sum(t["rows_written"] for t in tasks) == 10_000 and all(t["rows_written"] > 0 for t in tasks)
    assert all(t["seconds"] > 0 and t["peak_rss_mb"] > 0 for t in tasks)
    assert result["all_peak_rss_mb_max"] >= result["peak_rss_mb_max"] + result["workers_peak_rss_mb_max"]
    assert result["ray_start_s_all"][0] > 0
