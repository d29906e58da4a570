"""Registry domain types: an immutable snapshot of a project, and the registry protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from ladle.definitions import DataSource, Entity, FeatureService, FeatureView, PushSource
from ladle.errors import (
    DataSourceNotFoundError,
    EntityNotFoundError,
    FeatureServiceNotFoundError,
    FeatureViewNotFoundError,
    PushSourceNotFoundError,
)

Kind = Literal["entity", "data_source", "feature_view", "feature_service"]


@dataclass(frozen=True)
class RegistrySnapshot:
    """Every definition of one project at one registry version. Immutable; safe to share.

    ``version`` increases with every apply that changed something; caches keyed on it (e.g.
    resolved feature references) stay valid until it moves.
    """

    project: str
    version: int
    entities: Mapping[str, Entity] = field(default_factory=dict)
    data_sources: Mapping[str, DataSource] = field(default_factory=dict)
    feature_views: Mapping[str, FeatureView] = field(default_factory=dict)
    feature_services: Mapping[str, FeatureService] = field(default_factory=dict)

    def entity(self, name: str) -> Entity:
        """The entity called ``name``."""
        try:
            return self.entities[name]
        except KeyError:
            raise EntityNotFoundError(name, self.project) from None

    def data_source(self, name: str) -> DataSource:
        """The data source called ``name``."""
        try:
            return self.data_sources[name]
        except KeyError:
            raise DataSourceNotFoundError(name, self.project) from None

    def push_source(self, name: str) -> PushSource:
        """The push source called ``name``."""
        source = self.data_sources.get(name)
        if not isinstance(source, PushSource):
            raise PushSourceNotFoundError(name, self.project)
        return source

    def feature_view(self, name: str) -> FeatureView:
        """The feature view called ``name``."""
        try:
            return self.feature_views[name]
        except KeyError:
            raise FeatureViewNotFoundError(name, self.project) from None

    def feature_service(self, name: str) -> FeatureService:
        """The feature service called ``name``."""
        try:
            return self.feature_services[name]
        except KeyError:
            raise FeatureServiceNotFoundError(name, self.project) from None

    def views_fed_by(self, push_source_name: str) -> list[FeatureView]:
        """Feature views whose source is the given push source."""
        return [
            v
            for v in self.feature_views.values()
            if v.stream_source is not None and v.stream_source.name == push_source_name
        ]


@dataclass(frozen=True)
class ObjectVersion:
    """One stored version of one object."""

    kind: Kind
    name: str
    version: int
    content_hash: str
    applied_at: datetime
    applied_by: str
    spec: Mapping[str, Any] | None  # None for a deletion record


@dataclass(frozen=True)
class MaterializationRun:
    """One recorded materialization (or scheduled run) and its outcome."""

    view: str
    start: datetime
    end: datetime
    status: Literal["succeeded", "failed", "running"]
    started_at: datetime
    finished_at: datetime | None
    rows_written: int
    detail: str = ""
    run_id: int = 0


class Registry(Protocol):
    """What the rest of Ladle needs from a registry."""

    def snapshot(self, *, allow_cache: bool = True) -> RegistrySnapshot:
        """The project's current definitions (cached for ``cache_ttl_seconds`` if allowed)."""
        ...

    def watermark(self, view: str) -> datetime | None:
        """End of the newest successful materialization of ``view`` (UTC), or None."""
        ...

    def record_materialization(self, view: str, start: datetime, end: datetime, rows: int) -> None:
        """Record a successful materialization interval; advances the watermark to ``max(end)``."""
        ...

    def history(self, kind: Kind, name: str) -> Sequence[ObjectVersion]:
        """Every stored version of an object, oldest first."""
        ...
