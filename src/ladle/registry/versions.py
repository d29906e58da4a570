"""Past definitions by version: what a pin (``view@v3``, ``service@v2``) resolves to.

Every apply stores each changed object's spec in the registry's history with a per-object version
number (1 for the first apply, then +1 per change or deletion). A stored version never changes, so
:class:`DefinitionVersions` caches what it rebuilt for the life of the registry object: only the
first read of a pin costs a registry query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ladle.definitions import Entity, FeatureService, FeatureView
from ladle.definitions.stream_feature_view import view_from_spec
from ladle.errors import DefinitionError, RegistryError, VersionNotFoundError

History = Callable[[str, str], Sequence[Any]]  # (kind, name) -> ObjectVersion list, oldest first


class DefinitionVersions:
    """Stored versions of feature views and services, rebuilt from the registry's history on demand."""

    def __init__(self, history: History, project: str) -> None:
        self._history = history
        self._project = project
        self._specs: dict[tuple[str, str, int], Mapping[str, Any]] = {}

    def spec(self, kind: str, name: str, version: int) -> Mapping[str, Any]:
        """The spec of version ``version`` of ``kind`` ``name``; VersionNotFoundError if none (or a deletion)."""
        key = (kind, name, version)
        found = self._specs.get(key)
        if found is not None:
            return found
        label = kind.replace("_", " ")
        history = list(self._history(kind, name))
        for record in history:
            if record.version == version:
                if record.spec is None:
                    detail = f"version {version} of {label} '{name}' records its deletion"
                    raise VersionNotFoundError(f"{name}@v{version}", self._project, detail=detail)
                spec: Mapping[str, Any] = record.spec
                self._specs[key] = spec  # one atomic dict store: no lock (none to inherit held across a fork)
                return spec
        known = ", ".join(f"v{r.version}" for r in history if r.spec is not None) or "none"
        raise VersionNotFoundError(
            f"{name}@v{version}", self._project, detail=f"stored versions of {label} '{name}': {known}"
        )

    def feature_view(self, name: str, version: int, entities: Mapping[str, Entity]) -> FeatureView:
        """Version ``version`` of feature view ``name`` (read through today's entities)."""
        spec = self.spec("feature_view", name, version)
        try:
            return view_from_spec(spec, entities)
        except (DefinitionError, KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"feature view '{name}@v{version}' can no longer be rebuilt: {exc}") from exc

    def feature_service(self, name: str, version: int) -> FeatureService:
        """Version ``version`` of feature service ``name``."""
        spec = self.spec("feature_service", name, version)
        try:
            return FeatureService.from_spec(spec)
        except (DefinitionError, KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"feature service '{name}@v{version}' can no longer be rebuilt: {exc}") from exc
