"""The main job's live path (scripts/demo_live.sh, run by scripts/demo.sh) on a copy of feature_repo.

A real Tansu broker, ``ladle publish`` and ``ladle stream`` in the background, a real ``ladle serve``:
the script must print each commodity's stream value, its age in seconds and SIMULATED, the value must
be the price the publisher's path has at that event time (recomputed here), and everything the
script started must be stopped when it exits.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ladle.datasets import load_committed_extracts
from ladle.streaming.broker import free_port, port_free
from ladle.streaming.publish import Publisher, default_models

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^  (?P<code>\w+): current_price (?P<price>[\d.]+) \((?P<label>\w+)\), "
    r"event time (?P<time>\S+), age (?P<age>[\d.]+) s$"
)


@pytest.fixture
def served_repo(tmp_path: Path) -> Iterator[tuple[Path, int, int, dict[str, str]]]:
    repo = tmp_path / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    kafka, rest, grpc = free_port(), free_port(), free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "LADLE_DATA_DIR": str(ROOT / "data"),
        "LADLE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}",
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
    }
    ladle = [sys.executable, "-m", "ladle", "-c", str(repo)]
    # the batch views' history is not needed here (no ingest): their sources are not read
    subprocess.run([*ladle, "apply", "--skip-source-validation"], env=env, check=True, capture_output=True, timeout=120)
    server = subprocess.Popen(
        [*ladle, "serve", "--port", str(rest), "--grpc-port", str(grpc)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while port_free(rest) and time.monotonic() < deadline:
            assert server.poll() is None, "ladle serve exited"
            time.sleep(0.2)
        yield repo, kafka, rest, env
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_the_live_path_serves_fresh_simulated_stream_values(
    served_repo: tuple[Path, int, int, dict[str, str]], tmp_path: Path
) -> None:
    repo, kafka, rest, env = served_repo
    script = f"""
set -euo pipefail
source {ROOT / "scripts" / "demo_live.sh"}
trap live_stop EXIT
live_start {repo} {kafka}
live_query {rest}
"""
    logs = tmp_path / "logs"
    logs.mkdir()
    done = subprocess.run(
        ["bash", "-c", script],
        env={**env, "LIVE_LOGS": str(logs)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {m["code"]: m for m in (LINE.match(line) for line in done.stdout.splitlines()) if m}
    assert sorted(rows) == ["crude_oil_wti", "natural_gas"], done.stdout
    extracts = load_committed_extracts(ROOT / "data")
    publisher = Publisher.build(default_models(extracts["wti_daily"]), None, seed=2013)
    for code, row in rows.items():
        assert row["label"] == "SIMULATED"
        assert float(row["age"]) < 30.0  # a few seconds on a quiet machine; generous for a loaded one
        stamp = datetime.fromisoformat(row["time"]).astimezone(UTC)
        us = int(stamp.timestamp() * 1_000_000)
        # the stream's current_price is the price of its newest tick: the publisher's path at that time
        assert float(row["price"]) == pytest.approx(publisher.tick(code, us, None)["price"], abs=1e-4)
    assert "simulated True" in done.stdout
    # everything the script started is gone: the broker's port is free again
    assert port_free(kafka)
    assert (logs / "stream.log").read_text().startswith("ladle stream: commodity_price_stream, weather_stream")
