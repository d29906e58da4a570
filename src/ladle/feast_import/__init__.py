"""Import a Feast registry (protobuf file or SQL tables) into Ladle's registry: ``ladle import-feast``.

>>> from ladle.feast_import import import_feast
>>> report = import_feast(store, "old_feast_repo/data/registry.db", dry_run=True)
>>> [str(s) for s in report.skipped]
"""

from __future__ import annotations

from ladle.feast_import.importer import ImportReport, Skipped, import_feast, map_registry, projects_in
from ladle.feast_import.reader import read_registry

__all__ = ["ImportReport", "Skipped", "import_feast", "map_registry", "projects_in", "read_registry"]
