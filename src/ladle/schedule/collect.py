"""Finding the ``Schedule`` objects declared in a feature repo's ``.py`` files.

Schedules are discovered the way ``ladle apply`` discovers views: every module-level
:class:`~ladle.schedule.spec.Schedule` (or list/tuple of them, e.g. ``DEFAULT_SCHEDULES``) in the
repo's Python files (the files ``ladle apply`` reads, see :func:`ladle.repo.loader.repo_files`).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from ladle.errors import RepoError
from ladle.schedule.spec import Schedule

# sys.path and sys.modules are process-wide: one load at a time.
_LOCK = threading.Lock()


def collect_schedules(repo_path: str | Path) -> list[Schedule]:
    """Every schedule declared in the repo at ``repo_path``, sorted by name.

    >>> [s.name for s in collect_schedules("feature_repo")]
    ['daily_economic', 'hourly_prices_weather']

    Raises :class:`RepoError` if a file cannot be imported or two different schedules share a name.
    """
    found: dict[str, Schedule] = {}
    for module in import_repo_modules(Path(repo_path)):
        for schedule in schedules_in(vars(module).values()):
            seen = found.get(schedule.name)
            if seen is not None and seen != schedule:
                raise RepoError(
                    f"two different schedules are called '{schedule.name}' (one in {module.__file__}); "
                    "schedule names must be unique"
                )
            found[schedule.name] = schedule
    return [found[name] for name in sorted(found)]


def schedules_in(values: Iterable[object]) -> Iterator[Schedule]:
    """The schedules among module globals: ``Schedule`` objects and lists/tuples made only of them."""
    for value in values:
        if isinstance(value, Schedule):
            yield value
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Schedule) for v in value):
            yield from value


def import_repo_modules(root: Path) -> list[ModuleType]:
    """Import every Python file of the repo (repo directory on ``sys.path`` meanwhile).

    Files are imported under their path-derived names (``features``, ``pkg.views``) so that they
    can import each other as they would under ``ladle apply``; those modules are removed from
    ``sys.modules`` afterwards, so loading another repo with the same file names is not confused.
    """
    root = root.resolve()
    if not root.is_dir():
        raise RepoError(f"feature repo directory {root} does not exist")
    from ladle.repo.loader import repo_files  # the same files (and .ladleignore) as 'ladle apply'

    names = {}
    for path in repo_files(root):
        rel = path.relative_to(root).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts:
            names[".".join(parts)] = path
    with _isolated_imports(root, names):
        return [_import_file(name, path) for name, path in names.items()]


def _import_file(name: str, path: Path) -> ModuleType:
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing  # already imported by a sibling file during this load
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RepoError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code can raise anything; report it as a repo problem
        raise RepoError(f"cannot load feature repo: {path.name}: {type(exc).__name__}: {exc}") from exc
    return module


@contextmanager
def _isolated_imports(root: Path, names: Iterable[str]) -> Iterator[None]:
    with _LOCK:
        saved = dict(sys.modules)
        saved_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True  # keep the user's repo free of __pycache__
        for name in names:  # hide same-named modules (another repo's 'features') while this repo loads
            sys.modules.pop(name, None)
        sys.path.insert(0, str(root))
        try:
            yield
        finally:
            sys.dont_write_bytecode = saved_bytecode
            sys.path.remove(str(root))
            # Forget this repo's modules and restore what they shadowed; library modules imported
            # meanwhile stay, since importing a library twice would duplicate its classes.
            changed = [name for name, module in sys.modules.items() if saved.get(name) is not module]
            for name in changed:
                if _inside(getattr(sys.modules[name], "__file__", None), root):
                    del sys.modules[name]
            for name, module in saved.items():
                sys.modules.setdefault(name, module)


def _inside(file: str | None, root: Path) -> bool:
    return file is not None and Path(file).resolve().is_relative_to(root)
