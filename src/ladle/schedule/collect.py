"""Finding the ``Schedule`` objects declared in a feature repo's ``.py`` files.

Schedules are discovered the way ``ladle apply`` discovers views: every module-level
:class:`~ladle.schedule.spec.Schedule` (or list/tuple of them, e.g. ``DEFAULT_SCHEDULES``) in the
repo's Python files (the files ``ladle apply`` reads, see :func:`ladle.repo.loader.repo_files`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from ladle.errors import RepoError
from ladle.repo.loader import import_repo_modules
from ladle.schedule.spec import Schedule


def collect_schedules(repo_path: str | Path) -> list[Schedule]:
    """Every schedule declared in the repo at ``repo_path``, sorted by name.

    >>> [s.name for s in collect_schedules("feature_repo")]
    ['daily_economic', 'hourly_prices_weather']

    Raises :class:`RepoError` if a file cannot be imported or two different schedules share a name.
    """
    found: dict[str, Schedule] = {}
    for _, module in import_repo_modules(repo_path):
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
