"""Plan, apply and teardown of a project's definitions.

``plan`` computes what would change (added / changed field by field / removed, per kind) without
touching anything; ``apply`` validates the whole target state first and then writes it in one
registry transaction guarded by the project version the plan was based on, and finally prepares
the online store. ``partial=False`` (what ``ladle apply`` does) makes the registry equal to the repo,
removing what the repo no longer defines; ``partial=True`` (``store.apply([...])``) only adds and
updates the given objects, plus any ``objects_to_delete``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ladle.definitions import (
    DataSource,
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    KafkaSource,
    OnDemandFeatureView,
    Permission,
    PushSource,
)
from ladle.errors import BackendError, DefinitionError, LadleError, PinConflictError, RepoError, VersionNotFoundError
from ladle.registry.base import KINDS, Kind, ObjectChange, RegistrySnapshot, canonical_spec
from ladle.repo.diff import ObjectDiff, diff_specs
from ladle.repo.pins import pin_conflicts
from ladle.repo.validate import Target, resolve_views, validate_target

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore
    from ladle.online.base import OnlineStore
    from ladle.registry.base import Registry


def kind_of(obj: object) -> Kind:
    """The registry kind of a definition object."""
    if isinstance(obj, Entity):
        return "entity"
    if isinstance(obj, DataSource):
        return "data_source"
    if isinstance(obj, FeatureView):
        return "feature_view"
    if isinstance(obj, FeatureService):
        return "feature_service"
    if isinstance(obj, Permission):
        return "permission"
    if isinstance(obj, OnDemandFeatureView):
        return "on_demand_feature_view"
    raise DefinitionError(
        f"{obj!r} is not a definition; apply Entity, FileSource, PushSource, FeatureView, FeatureService "
        "or Permission objects"
    )


@dataclass
class RepoContents:
    """The definitions of a feature repo (or of one ``store.apply([...])`` call), by kind."""

    entities: list[Entity] = field(default_factory=list)
    data_sources: list[DataSource] = field(default_factory=list)
    feature_views: list[FeatureView] = field(default_factory=list)
    feature_services: list[FeatureService] = field(default_factory=list)
    permissions: list[Permission] = field(default_factory=list)
    on_demand_feature_views: list[OnDemandFeatureView] = field(default_factory=list)

    @classmethod
    def from_objects(cls, objects: Iterable[Definition]) -> RepoContents:
        """Group definitions by kind, adding the named sources the views read from.

        The same object (or an equal one) given twice counts once; two different definitions
        sharing a name raise :class:`RepoError`.
        """
        by_kind: dict[Kind, dict[str, Definition]] = {k: {} for k in KINDS}
        for obj in _with_view_sources(objects):
            kind = kind_of(obj)
            if kind == "data_source" and not obj.name:
                raise DefinitionError(f"{obj!r} has no name; only named data sources can be applied on their own")
            seen = by_kind[kind].get(obj.name)
            if seen is not None and seen is not obj and canonical_spec(seen.to_spec()) != canonical_spec(obj.to_spec()):
                label = kind.replace("_", " ")
                raise RepoError(f"{label} '{obj.name}' is defined twice, differently; names must be unique")
            by_kind[kind].setdefault(obj.name, obj)
        return cls(
            entities=[o for o in by_kind["entity"].values() if isinstance(o, Entity)],
            data_sources=[o for o in by_kind["data_source"].values() if isinstance(o, DataSource)],
            feature_views=[o for o in by_kind["feature_view"].values() if isinstance(o, FeatureView)],
            feature_services=[o for o in by_kind["feature_service"].values() if isinstance(o, FeatureService)],
            permissions=[o for o in by_kind["permission"].values() if isinstance(o, Permission)],
            on_demand_feature_views=[
                o for o in by_kind["on_demand_feature_view"].values() if isinstance(o, OnDemandFeatureView)
            ],
        )

    def objects(self) -> list[Definition]:
        """Every definition, entities first."""
        return [
            *self.entities, *self.data_sources, *self.feature_views, *self.feature_services, *self.permissions,
            *self.on_demand_feature_views,
        ]  # fmt: skip

    def by_kind(self) -> dict[Kind, dict[str, Any]]:
        """``{kind: {name: object}}``."""
        out: dict[Kind, dict[str, Any]] = {k: {} for k in KINDS}
        for obj in self.objects():
            out[kind_of(obj)][obj.name] = obj
        return out


def _with_view_sources(objects: Iterable[Definition]) -> Iterable[Definition]:
    for obj in objects:
        yield obj
        if isinstance(obj, FeatureView):
            source = obj.source
            if source.name:
                yield source
            if isinstance(source, (PushSource, KafkaSource)) and source.batch_source.name:
                yield source.batch_source
        if isinstance(obj, OnDemandFeatureView):
            yield from obj.request_sources


@dataclass(frozen=True)
class ApplyResult:
    """What a plan would do, or what an apply did."""

    project: str
    diffs: tuple[ObjectDiff, ...]
    base_version: int
    version: int
    applied: bool
    #: Pinned consumers this change breaks (docs/versions.md): plan lists them, apply refuses them
    #: unless forced (then they are listed here as what was accepted).
    warnings: tuple[str, ...] = ()

    @property
    def added(self) -> list[ObjectDiff]:
        """Objects that are (or would be) created."""
        return [d for d in self.diffs if d.action == "add"]

    @property
    def changed(self) -> list[ObjectDiff]:
        """Objects whose spec changes, with the keys that differ."""
        return [d for d in self.diffs if d.action == "change"]

    @property
    def removed(self) -> list[ObjectDiff]:
        """Objects that are (or would be) deleted."""
        return [d for d in self.diffs if d.action == "remove"]

    @property
    def has_changes(self) -> bool:
        """Whether anything differs from the registry."""
        return bool(self.diffs)

    def lines(self) -> list[str]:
        """One readable line per object: ``+ entity x``, ``~ feature_view y: ttl_seconds 60 → 120``."""
        return [str(d) for d in self.diffs]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "project": self.project,
            "applied": self.applied,
            "base_version": self.base_version,
            "version": self.version,
            "diffs": [d.to_dict() for d in self.diffs],
            "warnings": list(self.warnings),
        }


#: Called by :func:`apply` and :func:`teardown` with the registry as it is and each change (its diff
#: and the object: the new one, or the removed one), before anything is written; raises to refuse.
Authorize = Callable[[RegistrySnapshot, Sequence[tuple[ObjectDiff, Any]]], None]


@dataclass(frozen=True)
class _Prepared:
    base: RegistrySnapshot
    target: Target
    diffs: tuple[ObjectDiff, ...]
    warnings: tuple[str, ...] = ()


def _prepare(
    registry: Registry,
    offline_store: OfflineStore,
    contents: RepoContents,
    objects_to_delete: Sequence[Definition],
    partial: bool,
    skip_source_validation: bool,
) -> _Prepared:
    base = registry.snapshot(allow_cache=False)
    given = contents.by_kind()
    given["feature_view"] = resolve_views(offline_store, contents.feature_views, skip_source_validation)
    target: Target = {k: dict(_registered(base, k)) if partial else {} for k in KINDS}
    for kind in KINDS:
        target[kind].update(given[kind])
    for obj in objects_to_delete:
        kind = kind_of(obj)
        if obj.name in given[kind]:
            raise RepoError(f"{kind.replace('_', ' ')} '{obj.name}' is both applied and deleted")
        target[kind].pop(obj.name, None)
    target = validate_target(target, base)
    diffs = tuple(_diffs(base, target))
    return _Prepared(base, target, diffs, _pin_warnings(base, target) if diffs else ())


def _pin_warnings(base: RegistrySnapshot, target: Target) -> tuple[str, ...]:
    """The pinned consumers the change from ``base`` to ``target`` breaks (only the new breaks)."""
    if not any(s.pins or s.variants for s in target["feature_service"].values()):
        return ()

    def spec_of(kind: str, name: str, version: int) -> Any:
        if base.versions is None:
            raise VersionNotFoundError(f"{name}@v{version}", base.project, detail="this registry keeps no history")
        return base.versions.spec(kind, name, version)

    after = pin_conflicts(target["feature_service"], target["feature_view"], spec_of)
    try:
        before = set(pin_conflicts(base.feature_services, base.feature_views, spec_of))
    except LadleError:  # the registry's own pins are already unreadable: report everything
        before = set()
    return tuple(c for c in after if c not in before)


def _registered(snapshot: RegistrySnapshot, kind: Kind) -> dict[str, Any]:
    return dict(snapshot.objects(kind))


def _diffs(base: RegistrySnapshot, target: Target) -> Iterable[ObjectDiff]:
    for kind in KINDS:
        old = {n: canonical_spec(o.to_spec()) for n, o in _registered(base, kind).items()}
        new = {n: canonical_spec(o.to_spec()) for n, o in target[kind].items()}
        for name in sorted(set(old) | set(new)):
            if name not in old:
                yield ObjectDiff(kind, name, "add")
            elif name not in new:
                yield ObjectDiff(kind, name, "remove")
            elif old[name] != new[name]:
                yield ObjectDiff(kind, name, "change", tuple(diff_specs(old[name], new[name])))


def _contents(objects: Sequence[Definition] | RepoContents) -> RepoContents:
    return objects if isinstance(objects, RepoContents) else RepoContents.from_objects(objects)


def plan(
    registry: Registry,
    offline_store: OfflineStore,
    contents: RepoContents | Sequence[Definition],
    objects_to_delete: Sequence[Definition] = (),
    partial: bool = False,
    *,
    skip_source_validation: bool = False,
) -> ApplyResult:
    """What :func:`apply` would do with ``contents``; validates everything, writes nothing."""
    prepared = _prepare(
        registry, offline_store, _contents(contents), objects_to_delete, partial, skip_source_validation
    )
    version = prepared.base.version
    return ApplyResult(prepared.base.project, prepared.diffs, version, version, False, prepared.warnings)


def apply(
    registry: Registry,
    offline_store: OfflineStore,
    online_store: OnlineStore,
    objects_or_contents: Sequence[Definition] | RepoContents,
    objects_to_delete: Sequence[Definition] = (),
    partial: bool = True,
    *,
    skip_source_validation: bool = False,
    applied_by: str | None = None,
    authorize: Authorize | None = None,
    force: bool = False,
    records: Sequence[ObjectChange] = (),
) -> ApplyResult:
    """Validate, then write every change in one registry transaction, then update the online store.

    ``records`` (record kinds such as ``saved_dataset``) are written in the same transaction.

    Raises :class:`~ladle.errors.ConflictError` (and writes nothing) if another apply changed the
    project after this one read it. ``authorize`` sees every change first; if it raises, nothing is written.
    Raises :class:`~ladle.errors.PinConflictError` (and writes nothing) if the change breaks a pinned
    consumer, unless ``force``.
    """
    prepared = _prepare(
        registry, offline_store, _contents(objects_or_contents), objects_to_delete, partial, skip_source_validation
    )
    if prepared.warnings and not force:
        raise PinConflictError(list(prepared.warnings))
    if authorize is not None:
        authorize(prepared.base, [(d, _object_of(prepared, d)) for d in prepared.diffs])
    changes = [
        ObjectChange(d.kind, d.name, None if d.action == "remove" else prepared.target[d.kind][d.name].to_spec())
        for d in prepared.diffs
    ] + list(records)
    snapshot = registry.apply_changes(changes, expected_version=prepared.base.version, applied_by=applied_by)
    removed_views = [
        prepared.base.feature_views[d.name] for d in prepared.diffs if d.action == "remove" and d.kind == "feature_view"
    ]
    from ladle.retrieval.on_demand_write import stored_views

    keep = [v for v in snapshot.feature_views.values() if v.online] + stored_views(snapshot)  # + ODFV outputs
    kept = {v.name for v in keep}
    removed_views += [v for v in stored_views(prepared.base) if v.name not in kept]
    try:
        online_store.update(snapshot.project, keep=keep, delete=removed_views)
    except BackendError as exc:
        raise BackendError(
            f"the registry was updated (project version {snapshot.version}) but preparing the online store "
            f"failed: {exc}. Run apply again to retry the online store update."
        ) from exc
    return ApplyResult(
        snapshot.project, prepared.diffs, prepared.base.version, snapshot.version, True, prepared.warnings
    )


def _object_of(prepared: _Prepared, diff: ObjectDiff) -> Any:
    if diff.action == "remove":
        return prepared.base.objects(diff.kind)[diff.name]
    return prepared.target[diff.kind][diff.name]


def teardown(registry: Registry, online_store: OnlineStore, authorize: Authorize | None = None) -> None:
    """Remove the project's online data, then every registry row of the project (``authorize``: as in apply)."""
    snapshot = registry.snapshot(allow_cache=False)
    if authorize is not None:
        removals = [
            (ObjectDiff(kind, name, "remove"), obj) for kind in KINDS for name, obj in snapshot.objects(kind).items()
        ]
        authorize(snapshot, removals)
    from ladle.retrieval.on_demand_write import stored_views

    online_store.teardown(snapshot.project, [*snapshot.feature_views.values(), *stored_views(snapshot)])
    registry.delete_project()
