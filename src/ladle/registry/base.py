"""Registry domain types: an immutable snapshot of a project, the registry protocol and its options.

:class:`Registry` is what the façade and the services use; :class:`RunRecorder` and
:class:`LeaseRegistry` are optional abilities a caller tests for with ``isinstance``.
"""

from __future__ import annotations

import getpass
import hashlib
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import orjson

from ladle.definitions import (
    DataSource,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    Permission,
    PushSource,
)
from ladle.errors import (
    DataSourceNotFoundError,
    EntityNotFoundError,
    FeatureServiceNotFoundError,
    FeatureViewNotFoundError,
    PermissionNotFoundError,
    PushSourceNotFoundError,
    VersionNotFoundError,
)

if TYPE_CHECKING:
    from ladle.registry.versions import DefinitionVersions

Kind = Literal[
    "entity", "data_source", "feature_view", "feature_service", "permission", "on_demand_feature_view",
    "saved_dataset", "validation_reference",
]  # fmt: skip
#: Kinds made by FeatureStore methods, not declared in repos: stored and versioned, but neither in
#: snapshots nor touched by plan/apply (so ``ladle apply`` never removes them).
RECORD_KINDS: tuple[Kind, ...] = ("saved_dataset", "validation_reference")
#: Order in which kinds are loaded (views need entities).
KINDS: tuple[Kind, ...] = (
    "entity", "data_source", "feature_view", "feature_service", "permission", "on_demand_feature_view",
)  # fmt: skip


def canonical_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as it reads back from the database (tuples become lists, keys sorted)."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS))
    return loaded


def content_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a spec: equal specs, equal hashes."""
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


def default_applied_by(command: str | None = None) -> str:
    """``user@host command`` (the command defaults to this process's command line)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    if command is None:
        argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
        command = " ".join(argv)
    return f"{user}@{socket.gethostname()} {command}"[:500]


@dataclass(frozen=True)
class ObjectChange:
    """One object to write (``spec``) or delete (``spec=None``) in an apply."""

    kind: Kind
    name: str
    spec: Mapping[str, Any] | None


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
    permissions: Mapping[str, Permission] = field(default_factory=dict)
    on_demand_feature_views: Mapping[str, OnDemandFeatureView] = field(default_factory=dict)
    #: Past versions of views and services, for pins (``view@v3``); None where no history is kept.
    versions: DefinitionVersions | None = field(default=None, compare=False, repr=False)

    def feature_view_version(self, name: str, version: int) -> FeatureView:
        """Version ``version`` of feature view ``name`` (a pin); VersionNotFoundError if never stored."""
        if self.versions is None:
            raise VersionNotFoundError(f"{name}@v{version}", self.project, detail="this registry keeps no history")
        return self.versions.feature_view(name, version, self.entities)

    def feature_service_version(self, name: str, version: int) -> FeatureService:
        """Version ``version`` of feature service ``name``; VersionNotFoundError if never stored."""
        if self.versions is None:
            raise VersionNotFoundError(f"{name}@v{version}", self.project, detail="this registry keeps no history")
        return self.versions.feature_service(name, version)

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

    def on_demand_feature_view(self, name: str) -> OnDemandFeatureView:
        """The on-demand feature view called ``name``."""
        try:
            return self.on_demand_feature_views[name]
        except KeyError:
            detail = "No on-demand feature view has that name."
            raise FeatureViewNotFoundError(name, self.project, detail=detail) from None

    def permission(self, name: str) -> Permission:
        """The permission called ``name``."""
        try:
            return self.permissions[name]
        except KeyError:
            raise PermissionNotFoundError(name, self.project) from None

    def objects(self, kind: Kind) -> Mapping[str, Any]:
        """The objects of one kind, by name."""
        by_kind: dict[Kind, Mapping[str, Any]] = {
            "entity": self.entities,
            "data_source": self.data_sources,
            "feature_view": self.feature_views,
            "feature_service": self.feature_services,
            "permission": self.permissions,
            "on_demand_feature_view": self.on_demand_feature_views,
        }
        return by_kind[kind]

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
    """What the façade and the services need from a registry."""

    def snapshot(self, *, allow_cache: bool = True) -> RegistrySnapshot:
        """The project's current definitions (cached for ``cache_ttl_seconds`` if allowed)."""
        ...

    def version(self) -> int:
        """The project's version counter as stored now (0 if never applied)."""
        ...

    def history(self, kind: Kind, name: str) -> Sequence[ObjectVersion]:
        """Every stored version of an object, oldest first."""
        ...

    def dump(self) -> dict[str, Any]:
        """Everything stored for the project as JSON-ready data."""
        ...

    def apply_changes(
        self, changes: Sequence[ObjectChange], *, expected_version: int | None, applied_by: str | None = None
    ) -> RegistrySnapshot:
        """Write ``changes`` in one transaction if the project is still at ``expected_version``.

        Raises :class:`~ladle.errors.ConflictError` (and writes nothing) otherwise; returns the
        snapshot after the write.
        """
        ...

    def delete_project(self) -> None:
        """Delete everything stored for the project."""
        ...

    def watermark(self, view: str) -> datetime | None:
        """End of the newest successful materialization of ``view`` (UTC), or None."""
        ...

    def record_materialization(self, view: str, start: datetime, end: datetime, rows: int) -> None:
        """Record a successful materialization interval; advances the watermark to ``max(end)``."""
        ...

    def close(self) -> None:
        """Release connections and background threads."""
        ...


@runtime_checkable
class RunRecorder(Protocol):
    """A registry that also records materialization runs (optional ability)."""

    def begin_run(self, view: str, start: datetime, end: datetime) -> int:
        """Record a running run; return its id."""
        ...

    def finish_run(self, run_id: int, status: str, rows: int = 0, detail: str = "") -> None:
        """Record how the run ended."""
        ...


@runtime_checkable
class LeaseRegistry(Protocol):
    """A registry that can hold named, expiring leases (optional ability; schedulers need it)."""

    def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take the lease if it is free, expired or already ours."""
        ...

    def renew_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Extend a lease we hold; False if someone else took it."""
        ...

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease back."""
        ...
