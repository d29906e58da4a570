"""Loading a feature repo's .py files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ladle.errors import RepoError
from ladle.repo import load_repo

HEADER = """
from datetime import timedelta
from ladle import Entity, FeatureService, FeatureView, Field, FileSource, Float64, PushSource, ValueType
"""


def write(root: Path, name: str, body: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))


def test_collects_definitions_and_view_sources(tmp_path: Path) -> None:
    write(
        tmp_path,
        "entities.py",
        HEADER + 'commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)\n',
    )
    write(
        tmp_path,
        "views.py",
        HEADER
        + """
from entities import commodity

unnamed = FileSource(path="data/x.parquet", timestamp_field="ts")
prices = FeatureView(
    name="prices", entities=[commodity], schema=[Field(name="price", dtype=Float64)],
    source=PushSource(
        name="prices_push",
        batch_source=FileSource(name="prices_file", path="p.parquet", timestamp_field="ts"),
    ),
)
model = FeatureService(name="model", features=[prices])
""",
    )
    contents = load_repo(tmp_path)
    assert [e.name for e in contents.entities] == ["commodity"]
    # Sources only reachable through the view are collected; unnamed ones are not.
    assert sorted(s.name for s in contents.data_sources) == ["prices_file", "prices_push"]
    assert [v.name for v in contents.feature_views] == ["prices"]
    assert [s.name for s in contents.feature_services] == ["model"]
    assert not list(tmp_path.rglob("__pycache__"))


def test_duplicate_names_name_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.py", HEADER + 'x = Entity(name="commodity", join_keys=["code"])\n')
    write(tmp_path, "b.py", HEADER + 'y = Entity(name="commodity", join_keys=["other_code"])\n')
    with pytest.raises(RepoError, match=r"entity 'commodity' is defined twice, differently \(in a.py and b.py\)"):
        load_repo(tmp_path)


def test_equal_definitions_in_two_files_are_one(tmp_path: Path) -> None:
    write(tmp_path, "a.py", HEADER + 'x = Entity(name="commodity", join_keys=["code"])\n')
    write(tmp_path, "b.py", HEADER + 'y = Entity(name="commodity", join_keys=["code"])\n')
    assert [e.name for e in load_repo(tmp_path).entities] == ["commodity"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"defs.py": "import os\n\nx = 1 / 0\n"}, r"defs.py:3: ZeroDivisionError: division by zero"),
        ({"defs.py": "x = (\n"}, r"defs.py:1: SyntaxError"),
        (
            {"defs.py": "from helper import f\nf()\n", "helper.py": "def f():\n    raise ValueError('boom')\n"},
            r"helper.py:2: ValueError: boom",
        ),
        ({"defs.py": HEADER + 'e = Entity(name="bad name")\n'}, r"defs.py:4: DefinitionError: entity name 'bad name'"),
        ({"defs.py": "import not_a_module_anywhere\n"}, r"defs.py:1: ModuleNotFoundError"),
    ],
    ids=["runtime", "syntax", "in-helper", "definition", "import"],
)
def test_import_errors_name_file_and_line(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, body in files.items():
        write(tmp_path, name, body)
    with pytest.raises(RepoError, match=message):
        load_repo(tmp_path)


def test_ignored_and_hidden_paths_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "ok.py", HEADER + 'e = Entity(name="commodity")\n')
    write(tmp_path, "scratch/broken.py", "raise RuntimeError('should be ignored')\n")
    write(tmp_path, ".hidden/broken.py", "raise RuntimeError('should be ignored')\n")
    write(tmp_path, "venv/lib/broken.py", "raise RuntimeError('should be ignored')\n")
    write(tmp_path, ".ladleignore", "# comment\nscratch/\n")
    assert [e.name for e in load_repo(tmp_path).entities] == ["commodity"]


def test_repos_with_same_module_names_do_not_leak(tmp_path: Path) -> None:
    for name in ("one", "two"):
        write(tmp_path / name, "defs.py", HEADER + f'e = Entity(name="{name}")\n')
    assert [e.name for e in load_repo(tmp_path / "one").entities] == ["one"]
    assert [e.name for e in load_repo(tmp_path / "two").entities] == ["two"]
    # Edits are seen on the next load (no stale module cache).
    write(tmp_path / "one", "defs.py", HEADER + 'e = Entity(name="one_v2")\n')
    assert [e.name for e in load_repo(tmp_path / "one").entities] == ["one_v2"]


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="not a directory"):
        load_repo(tmp_path / "missing")
