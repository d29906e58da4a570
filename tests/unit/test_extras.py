"""Every extra that an error message tells a user to install exists in pyproject.toml."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from ladle import plugins

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "ladle"
_LITERAL = re.compile(r"ladle\[([A-Za-z0-9_,\- ]+)\]")


def declared_extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def named_extras() -> dict[str, set[str]]:
    """Extra → the places naming it: ``ladle[x]`` in any string, ``MissingExtraError(_, "x", _)``, plugins' map."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        where = str(path.relative_to(ROOT))
        text = path.read_text()
        for match in _LITERAL.finditer(text):
            for extra in match.group(1).split(","):
                found.setdefault(extra.strip(), set()).add(where)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MissingExtraError":
                extra_arg = node.args[1] if len(node.args) > 1 else None
                if isinstance(extra_arg, ast.Constant) and isinstance(extra_arg.value, str):
                    found.setdefault(extra_arg.value, set()).add(where)
    for extra in plugins._EXTRAS.values():
        found.setdefault(extra, set()).add("src/ladle/plugins.py (_EXTRAS)")
    return found


def test_every_extra_named_in_a_hint_exists() -> None:
    named = named_extras()
    assert {"redis", "postgres", "server", "data"} <= set(named)  # the scan finds the hints it is meant to
    missing = {extra: sorted(places) for extra, places in named.items() if extra not in declared_extras()}
    assert not missing, f"extras named in hints but not in [project.optional-dependencies]: {missing}"
