"""Load a feature repo: import its ``.py`` files and collect the definitions they create.

Every module-level :class:`Entity`, named data source, :class:`FeatureView`,
:class:`FeatureService` and :class:`Permission` is collected; named sources that views read are
collected too. Files import each other by their path relative to the repo
(``from entities import commodity``), as in Feast. Files written for Feast (``from feast import
FeatureView``) load unchanged: :func:`ladle.feast_shim.feast_names` provides those names meanwhile.
Hidden directories, ``__pycache__``, virtualenvs and the patterns listed in ``.ladleignore`` (or
``.feastignore``) are skipped. A file that fails to import gives a :class:`RepoError` naming the file
and line, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Protocol, TypeVar

from ladle.definitions import (
    DataSource,
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    Permission,
)
from ladle.errors import ObjectNotFoundError, RepoError
from ladle.feast_shim import feast_names
from ladle.registry.base import canonical_spec
from ladle.repo.plan import RepoContents, kind_of

_SKIP_DIRS = {"__pycache__", "venv", "site-packages", "node_modules"}
_IGNORE_FILES = (".ladleignore", ".feastignore")
# sys.path and sys.modules are process-wide: one load at a time.
_LOCK = threading.Lock()


def load_repo(repo_path: str | Path) -> RepoContents:
    """Import every Python file of the repo and return the definitions found."""
    root = Path(repo_path).resolve()
    if not root.is_dir():
        raise RepoError(f"feature repo {root} is not a directory")
    found: dict[tuple[str, str], tuple[Definition, Path]] = {}
    for file, module in import_repo_modules(root):
        for obj in _definitions(module):
            _add(found, obj, file, root)
    return RepoContents.from_objects(obj for obj, _ in found.values())


def import_repo_modules(repo_path: str | Path) -> list[tuple[Path, ModuleType]]:
    """Import every Python file of the repo; ``(file, module)`` pairs in file order.

    Other repo-declared objects (schedules, ingestions) are collected from these modules. The
    modules are dropped from ``sys.modules`` afterwards, so another repo's same-named files load anew.
    """
    root = Path(repo_path).resolve()
    if not root.is_dir():
        raise RepoError(f"feature repo {root} is not a directory")
    files = list(repo_files(root))
    with _LOCK, _importing_from(root), feast_names():
        return [(file, _import(root, file)) for file in files]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def collect_declared(repo_path: str | Path, kind: type[N], what: str) -> list[N]:
    """Every module-level ``kind`` object declared in the repo's files, sorted by name.

    ``what`` names the kind in errors (``"ingestions"``); two different objects of one name are a
    :class:`RepoError`.
    """
    found: dict[str, N] = {}
    for file, module in import_repo_modules(repo_path):
        for value in vars(module).values():
            if not isinstance(value, kind):
                continue
            seen = found.get(value.name)
            if seen is not None and seen is not value:
                raise RepoError(f"two {what} are called '{value.name}' (one in {file.name}); names must be unique")
            found[value.name] = value
    return [found[name] for name in sorted(found)]


def select_named(declared: Sequence[N], names: Sequence[str], missing: type[ObjectNotFoundError], what: str) -> list[N]:
    """The objects called ``names`` (all when none are given), in order; ``missing`` if one is not declared."""
    if not names:
        return list(declared)
    by_name = {d.name: d for d in declared}
    for name in names:
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise missing(name, detail=f"Declared {what}: {known}")
    return [by_name[n] for n in names]


def repo_files(root: Path) -> Iterator[Path]:
    """The repo's Python files, sorted, without ignored paths."""
    patterns = _ignore_patterns(root)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part in _SKIP_DIRS for part in rel.parts[:-1]):
            continue
        if any(fnmatch(rel.as_posix(), p) or fnmatch(rel.parts[0], p.rstrip("/")) for p in patterns):
            continue
        yield path


def _ignore_patterns(root: Path) -> list[str]:
    patterns: list[str] = []
    for name in _IGNORE_FILES:
        file = root / name
        if file.is_file():
            lines = (line.strip() for line in file.read_text().splitlines())
            patterns.extend(line for line in lines if line and not line.startswith("#"))
    return patterns


@contextmanager
def _importing_from(root: Path) -> Iterator[None]:
    # Modules of a previous load of this (or another) repo must not be reused from sys.modules.
    _forget_modules(root)
    importlib.invalidate_caches()  # files added since the last load must be found
    sys.path.insert(0, str(root))
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # keep the user's repo free of __pycache__
    try:
        yield
    finally:
        sys.dont_write_bytecode = saved_bytecode
        if str(root) in sys.path:
            sys.path.remove(str(root))
        _forget_modules(root)


def _forget_modules(root: Path) -> None:
    # Repo modules are imported through str(root) on sys.path, so their __file__ starts with it.
    prefix = str(root) + os.sep
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(prefix):
            del sys.modules[name]


def _module_name(root: Path, file: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import(root: Path, file: Path) -> ModuleType:
    name = _module_name(root, file)
    try:
        if name and all(p.isidentifier() for p in name.split(".")):
            return importlib.import_module(name)
        # Not importable by name (e.g. "my-views.py"): load it under a private name.
        spec = importlib.util.spec_from_file_location(f"_ladle_repo_{abs(hash(file))}", file)
        if spec is None or spec.loader is None:
            raise RepoError(f"{file.relative_to(root)}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    except RepoError:
        raise
    except Exception as exc:  # user code can raise anything; report where, not a traceback
        raise RepoError(f"cannot load feature repo: {_where(exc, root, file)}: {type(exc).__name__}: {exc}") from exc


def _where(exc: Exception, root: Path, file: Path) -> str:
    def rel(path: str) -> str:
        p = Path(path).resolve()
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)

    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{rel(exc.filename)}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve().is_relative_to(root)]
    if frames:
        return f"{rel(frames[-1].filename)}:{frames[-1].lineno}"
    return file.relative_to(root).as_posix()


def _definitions(module: ModuleType) -> Iterator[Definition]:
    for value in list(vars(module).values()):
        named_source = isinstance(value, DataSource) and bool(value.name)
        if named_source or isinstance(value, (Entity, FeatureView, FeatureService, Permission, OnDemandFeatureView)):
            yield value


def _add(found: dict[tuple[str, str], tuple[Definition, Path]], obj: Definition, file: Path, root: Path) -> None:
    key = (kind_of(obj), obj.name)
    seen = found.get(key)
    if seen is None:
        found[key] = (obj, file)
        return
    other, other_file = seen
    if other is obj or canonical_spec(other.to_spec()) == canonical_spec(obj.to_spec()):
        return
    kind = key[0].replace("_", " ")
    places = sorted({other_file.relative_to(root).as_posix(), file.relative_to(root).as_posix()})
    where = " and ".join(places) if len(places) > 1 else places[0]
    raise RepoError(f"{kind} '{obj.name}' is defined twice, differently (in {where}); names must be unique")
