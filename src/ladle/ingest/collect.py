"""Finding the ``Ingestion`` objects declared in a feature repo's ``.py`` files."""

from __future__ import annotations

from pathlib import Path

from ladle.errors import ObjectNotFoundError, RepoError
from ladle.ingest.job import Ingestion
from ladle.repo.loader import import_repo_modules


class IngestionNotFoundError(ObjectNotFoundError):
    """No ingestion by that name is declared in the feature repo."""

    kind = "ingestion"


def collect_ingestions(repo_path: str | Path) -> list[Ingestion]:
    """Every module-level :class:`Ingestion` of the repo, sorted by name."""
    found: dict[str, Ingestion] = {}
    for file, module in import_repo_modules(repo_path):
        for value in vars(module).values():
            if not isinstance(value, Ingestion):
                continue
            seen = found.get(value.name)
            if seen is not None and seen is not value:
                raise RepoError(f"two ingestions are called '{value.name}' (one in {file.name}); names must be unique")
            found[value.name] = value
    return [found[name] for name in sorted(found)]


def select(ingestions: list[Ingestion], names: list[str]) -> list[Ingestion]:
    """The ingestions called ``names`` (all when empty), in the given order."""
    if not names:
        return ingestions
    by_name = {i.name: i for i in ingestions}
    for name in names:
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise IngestionNotFoundError(name, detail=f"Declared ingestions: {known}")
    return [by_name[n] for n in names]
