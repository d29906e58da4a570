"""docs/architecture.md is the map of the code: every package and top-level module must be on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "ladle"
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _packages() -> list[str]:
    """Every package under src/ladle/ as a path relative to it, e.g. ``server/h2grpc/``."""
    found = []
    for init in sorted(SRC.rglob("__init__.py")):
        rel = init.parent.relative_to(SRC).as_posix()
        if rel == "." or rel.startswith("server/_proto/"):  # generated protos: one entry, server/_proto/
            continue
        found.append(f"{rel}/")
    return found


def _mentioned(rel: str) -> bool:
    """``online/redis/`` counts as mentioned as itself, or as ``redis/`` inside its parent's entry."""
    parts = rel.rstrip("/").split("/")
    if re.search(rf"(?<![\w/]){re.escape(rel)}", DOC):
        return True
    name = f"{parts[-1]}/"
    parent = "/".join(parts[:-1]) + "/" if len(parts) > 1 else ""
    # A nested package may be drawn indented under its parent's block (the server block) or named
    # with its parent's path (online/sqlite/); either way its own name must appear.
    return bool(parent) and parent in DOC and re.search(rf"(?<![\w]){re.escape(name)}", DOC) is not None


@pytest.mark.parametrize("package", _packages())
def test_every_package_is_on_the_map(package: str) -> None:
    assert _mentioned(package), f"docs/architecture.md does not mention the package {package}"


@pytest.mark.parametrize("module", sorted(p.name for p in SRC.glob("*.py")))
def test_every_top_level_module_is_on_the_map(module: str) -> None:
    assert re.search(rf"(?<![\w/.]){re.escape(module)}", DOC), f"docs/architecture.md does not mention {module}"


@pytest.mark.parametrize("module", sorted(p.name for p in (SRC / "server").glob("*.py") if p.name != "__init__.py"))
def test_every_server_module_is_on_the_map(module: str) -> None:
    """The server's modules are drawn one by one: both gRPC engines, the HTTP/2 server, the front ends."""
    assert re.search(rf"(?<![\w/.]){re.escape(module)}", DOC), f"docs/architecture.md does not mention {module}"


def test_the_plugin_entry_points_on_the_map_are_the_real_ones() -> None:
    """The table of plugin kinds names the entry points pyproject.toml declares, and nothing else."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for group, entries in project["entry-points"].items():
        assert f"`{group}`" in DOC, f"entry point group {group} is not on the map"
        for name, target in entries.items():
            assert f"`{target}`" in DOC, f"{group} '{name}' → {target} is not on the map"
