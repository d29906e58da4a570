"""Real Feast for the compatibility tests: one venv (tests/feast_venv.py), shared with the security tests.

The venv is made once with ``pip install feast==0.67.0`` (the mechanism of
``tests/security/test_auth_feast_client.py``); outside CI a machine that cannot install it skips
the tests that need it, loudly; under ``CI=true`` they fail. Real Feast is only ever run in that
venv's Python (subprocesses), never imported into Ladle's process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest

import feast_venv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def feast_python() -> Path:
    """The Python of a venv with Feast 0.67.0 installed (made once, then reused). (tests/feast_venv.py)."""
    return feast_venv.feast_python()


def run_feast(python: Path, args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` in Feast's venv, without Ladle's or Feast's environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEAST_", "LADLE_", "PYTHONPATH"))}
    env["FEAST_USAGE"] = "False"
    return subprocess.run(
        [str(python), *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def ladle_paths() -> tuple[str, str]:
    """Ladle's ``src`` and the site-packages of Ladle's venv (appended after Feast's own, for orjson & co)."""
    return str(ROOT / "src"), sysconfig.get_paths()["purelib"]


#: Feast message names whose descriptors the tests compare with Ladle's (see test_import_protos.py).
FEAST_MESSAGES: dict[str, str] = {
    "Duration": "google.protobuf.Duration",
    "Timestamp": "google.protobuf.Timestamp",
    "FileOptions": "feast.core.DataSource.FileOptions",
    "KafkaOptions": "feast.core.DataSource.KafkaOptions",
    "RequestDataOptions": "feast.core.DataSource.RequestDataOptions",
    "SchemaJson": "feast.core.StreamFormat.JsonFormat",
    "OnDemandSourcesEntry": "feast.core.OnDemandFeatureViewSpec.SourcesEntry",
    "LoggingFileDestination": "feast.core.LoggingConfig.FileDestination",
}


def feast_message_name(ours: str) -> str:
    """The full Feast name of one of Ladle's declared registry messages."""
    return FEAST_MESSAGES.get(ours, f"feast.core.{ours}")


@pytest.fixture(scope="session")
def feast_introspection(feast_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Feast's public surface and the descriptors of its registry messages, from one Feast process."""
    from ladle.feast_import._proto import declared_fields

    names = sorted({feast_message_name(n) for n in declared_fields()})
    script = Path(__file__).with_name("extract_surface.py")
    done = run_feast(feast_python, [str(script), json.dumps(names)], cwd=tmp_path_factory.mktemp("introspect"))
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result
