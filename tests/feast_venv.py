"""Feast 0.67.0 in a venv of its own, made once and shared by every test that runs the real Feast
(tests/feast_compat, tests/security/test_auth_feast_client.py).

The venv lives in the user's cache (``$LADLE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ladle``, else
``~/.cache/ladle``), named by Feast's version, like pip's own cache: a fresh clone on a machine that
ran the suite before finds it (making it takes about a minute), and a new version gets a new venv.

The venv is made under an exclusive file lock, so the suite's two xdist workers (and a second
pytest run) never build it at the same time; the second waits and then finds it installed.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

FEAST = "0.67.0"
_USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
_CACHE = Path(os.environ.get("LADLE_CACHE_DIR") or _USER_CACHE / "ladle")
VENV = _CACHE / f"feast-venv-{FEAST}"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _python() -> Path:
    return VENV / "bin" / "python"


def _installed() -> bool:
    if not _python().exists():
        return False
    probe = [str(_python()), "-c", "import importlib.metadata as m; print(m.version('feast'))"]
    done = subprocess.run(probe, check=False, capture_output=True, text=True, cwd="/")
    return done.returncode == 0 and done.stdout.strip() == FEAST


def feast_python() -> Path:
    """The Python of the Feast venv, made if missing; skips loudly (fails under CI=true) if it cannot be."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f"feast-venv-{FEAST}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            pip = [str(_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"feast=={FEAST}"]
            done = subprocess.run(pip, check=False, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                reason = f"FEAST NOT INSTALLABLE: pip install feast=={FEAST} failed: {done.stderr[-500:]}"
                if IN_CI:
                    pytest.fail(reason)
                pytest.skip(reason)
    return _python()
