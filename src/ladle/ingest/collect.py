"""Finding the ``Ingestion`` objects declared in a feature repo's ``.py`` files."""

from __future__ import annotations

from pathlib import Path

from ladle.errors import ObjectNotFoundError
from ladle.ingest.job import Ingestion
from ladle.repo.loader import collect_declared, select_named


class IngestionNotFoundError(ObjectNotFoundError):
    """No ingestion by that name is declared in the feature repo."""

    kind = "ingestion"


def collect_ingestions(repo_path: str | Path) -> list[Ingestion]:
    """Every module-level :class:`Ingestion` of the repo, sorted by name."""
    return collect_declared(repo_path, Ingestion, "ingestions")


def select(ingestions: list[Ingestion], names: list[str]) -> list[Ingestion]:
    """The ingestions called ``names`` (all when empty), in the given order."""
    return select_named(ingestions, names, IngestionNotFoundError, "ingestions")
