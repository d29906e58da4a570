"""docs/tutorial.md runs as written, on a copy of feature_repo, with the real data in data/."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def blocks(kind: str) -> list[str]:
    return [code for lang, code in BLOCK.findall((ROOT / "docs" / "tutorial.md").read_text()) if lang == kind]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("data"))
    monkeypatch.setenv("LADLE_DATA_DIR", str(ROOT / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_tutorial_runs_and_serves_the_trained_model(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for script in blocks("bash"):
        for line in filter(None, (ln.strip() for ln in script.splitlines())):
            argv = shlex.split(line)
            assert argv[0] == "ladle", line
            done = subprocess.run(
                [sys.executable, "-m", "ladle", *argv[1:]],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
                check=False,
            )
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    namespace: dict[str, object] = {}
    for code in blocks("python"):
        exec(compile(code, "docs/tutorial.md", "exec"), namespace)
    training = namespace["training"]
    # about 252 trading days a year over 1990-2009; a Monday holiday is past the 3-day ttl of Friday's close
    assert len(training) > 4900  # type: ignore[arg-type]
    years = training["event_timestamp"].dt.year  # type: ignore[index]
    assert (years.min(), years.max()) == (1990, 2009)
    assert 0.0 <= float(namespace["hit_rate"]) <= 1.0  # type: ignore[arg-type]
    x = namespace["x"]
    assert isinstance(x, np.ndarray) and np.isfinite(x).all(), "an online input was missing or stale"
    out = capsys.readouterr().out
    assert "expected crude move" in out
    assert namespace["row"]["simulated"] == [True] and "simulated inputs: True" in out  # type: ignore[index]
