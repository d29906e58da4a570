"""Start-up stays light: ``import ladle`` and ``ladle --help`` load no heavy library.

Checked through ``sys.modules`` in a fresh interpreter (robust), not with a timing (noisy);
``bench/startup.py`` measures the time.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import ladle
from ladle.cli.commands import COMMANDS, load_command
from ladle.cli.main import cli

HEAVY = ("pandas", "pyarrow", "duckdb", "sqlalchemy", "numpy", "rich", "redis", "grpc", "starlette", "tqdm")


def loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return loaded


def test_import_ladle_loads_no_heavy_library() -> None:
    assert loaded_after("import ladle") == []


def test_cli_help_loads_no_heavy_library_and_lists_every_command() -> None:
    code = (
        "import contextlib, io\nfrom ladle.cli.main import cli\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n    cli.main(['--help'], standalone_mode=False)\n"
        "assert all(name in out.getvalue() for name in " + repr(sorted(COMMANDS)) + ")"
    )
    assert loaded_after(code) == []


def test_a_lazy_name_is_the_real_object() -> None:
    from ladle.store import FeatureStore

    assert ladle.FeatureStore is FeatureStore
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = ladle.NoSuchThing  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_table_matches_the_command(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    assert COMMANDS[name].short_help == command.get_short_help_str(limit=500)


def test_unknown_command_is_one_usage_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-verb"])
    assert result.exit_code == 2
    assert "No such command 'no-such-verb'" in result.output
