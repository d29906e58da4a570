"""Optional-dependency guard for the data loaders."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDataPackageError(ImportError):
    """A loader needs a package from the ``data`` extra that is not installed."""


def require(module: str, package: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDataPackageError` naming the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDataPackageError(f"this loader needs the {package!r} package: pip install 'ladle[data]'") from exc
