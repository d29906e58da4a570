"""Feature references (``view:feature``, a bare ``view``, or a feature service) → view selections.

A reference may pin a stored version of its view: ``view@v3:feature`` (or a bare ``view@v3``) reads
version 3 of the view's definition (schema, ttl, entities, source), and so does a feature service's
``pins={"view": 3}``. Output columns keep the view's name as their prefix, so a model sees the same
column names pinned or not (docs/versions.md).

A :class:`ViewSelection` is the vocabulary retrieval and the offline stores share, so it lives with
the definitions; :func:`resolve` reads definitions from any :class:`Catalog` (a registry snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ladle.definitions.feature_service import FeatureService, parse_pinned
from ladle.definitions.feature_view import FeatureView
from ladle.errors import (
    DefinitionError,
    FeatureNameCollisionError,
    FeatureServiceNotFoundError,
    InvalidFeatureReferenceError,
    RequestError,
)


class Catalog(Protocol):
    """Definitions looked up by name (:class:`ladle.registry.base.RegistrySnapshot` is one)."""

    @property
    def feature_views(self) -> Mapping[str, FeatureView]:
        """Every feature view, by name."""
        ...

    def feature_view(self, name: str) -> FeatureView:
        """The feature view called ``name``; raises FeatureViewNotFoundError."""
        ...

    def feature_service(self, name: str) -> FeatureService:
        """The feature service called ``name``; raises FeatureServiceNotFoundError."""
        ...


class VersionedCatalog(Catalog, Protocol):
    """A catalog that can also rebuild stored versions (pins); a registry snapshot is one."""

    def feature_view_version(self, name: str, version: int) -> FeatureView:
        """Version ``version`` of view ``name``; raises VersionNotFoundError."""
        ...


@dataclass(frozen=True)
class ViewSelection:
    """Which features of a view a request reads, and under what output prefix."""

    view: FeatureView
    features: tuple[str, ...]
    prefix: str
    join_key_map: dict[str, str] = field(default_factory=dict)
    version: int | None = None  # the pinned definition version, None for the latest

    def output_names(self, full_feature_names: bool) -> list[str]:
        """Column names in the response for this selection."""
        if full_feature_names:
            return [f"{self.prefix}__{f}" for f in self.features]
        return list(self.features)

    def entity_columns(self) -> list[str]:
        """The request's column name for each of the view's join keys."""
        return [self.join_key_map.get(k, k) for k in self.view.join_keys]


FeatureRequest = Sequence[str] | FeatureService | str


def resolve(catalog: Catalog, features: FeatureRequest, full_feature_names: bool = False) -> list[ViewSelection]:
    """Resolve references into one selection per view, in first-mention order.

    ``features`` is a list of ``"view:feature"`` or bare ``"view"`` (all its features), a
    :class:`FeatureService`, or a feature service name given as a single string.
    """
    if isinstance(features, FeatureService):
        selections = _from_service(catalog, features)
    elif isinstance(features, str):
        try:
            service = catalog.feature_service(features)
        except FeatureServiceNotFoundError as exc:
            raise FeatureServiceNotFoundError(
                features,
                exc.project,
                detail="features given as one string name a feature service: pass a list of 'view:feature' "
                f"references (features=[{features!r}]) or the name of a feature service",
            ) from None
        selections = _from_service(catalog, service)
    else:
        selections = _from_refs(catalog, features)
    check_collisions(selections, full_feature_names)
    return selections


def _from_service(catalog: Catalog, service: FeatureService) -> list[ViewSelection]:
    if service.is_split:
        raise InvalidFeatureReferenceError(
            f"feature service '{service.name}' splits traffic between {sorted(service.variants)}: read it with "
            "get_online_features (each entity goes to its arm), or pick an arm's service for training data "
            "(docs/versions.md)"
        )
    out = []
    for proj in service.projections:
        version = service.pins.get(proj.view_name)
        view = _view(catalog, proj.view_name, version)
        for name in proj.features:
            view.feature(name)
        out.append(ViewSelection(view, tuple(proj.features), proj.name_to_use, dict(proj.join_key_map), version))
    return out


def split_ref(ref: str) -> tuple[str, int | None, str]:
    """``"view@v3:feature"`` → ``("view", 3, "feature")``; the version is None when unpinned and the
    feature empty for a bare view. Raises InvalidFeatureReferenceError if malformed."""
    if not isinstance(ref, str) or not ref or ref.count(":") > 1:
        raise InvalidFeatureReferenceError(
            f"feature reference {ref!r} is malformed: use 'view:feature', 'view@vN:feature' or a bare 'view'"
        )
    view_name, _, feature = ref.partition(":")
    try:
        name, version = parse_pinned(view_name)
    except DefinitionError as exc:
        raise InvalidFeatureReferenceError(f"feature reference {ref!r}: {exc}") from None
    return name, version, feature


def _view(catalog: Catalog, name: str, version: int | None) -> FeatureView:
    if version is None:
        return catalog.feature_view(name)
    lookup = getattr(catalog, "feature_view_version", None)
    if lookup is None:
        raise InvalidFeatureReferenceError(f"'{name}@v{version}': this catalog keeps no definition versions")
    view: FeatureView = lookup(name, version)
    return view


def _from_refs(catalog: Catalog, refs: Sequence[str]) -> list[ViewSelection]:
    if not refs:
        raise RequestError("no features requested: pass 'view:feature' references or a feature service")
    views: dict[tuple[str, int | None], FeatureView] = {}
    wanted: dict[tuple[str, int | None], list[str]] = {}
    for ref in refs:
        view_name, version, feature = split_ref(ref)
        if not feature and version is None and view_name not in catalog.feature_views:
            raise _bare_name_error(catalog, ref)
        key = (view_name, version)
        view = views.get(key)
        if view is None:
            view = views[key] = _view(catalog, view_name, version)
            wanted[key] = []
        names = [feature] if feature else view.feature_names
        if feature:
            view.feature(feature)
        for name in names:
            if name not in wanted[key]:
                wanted[key].append(name)
    return [ViewSelection(views[k], tuple(wanted[k]), k[0], version=k[1]) for k in wanted]


def _bare_name_error(catalog: Catalog, ref: str) -> InvalidFeatureReferenceError:
    # A bare name is read as a whole view; when it is no view, it is most often a feature without its view.
    owners = sorted(name for name, view in catalog.feature_views.items() if ref in view.feature_names)
    hint = f" (e.g. {', '.join(repr(f'{o}:{ref}') for o in owners)})" if owners else ""
    return InvalidFeatureReferenceError(
        f"feature reference {ref!r} names no feature view: a reference is 'view:feature'{hint}, "
        "or a bare view name for all its features"
    )


def check_selections(selections: Sequence[ViewSelection], full_feature_names: bool) -> None:
    """Raise a typed error if a selection names a feature its view lacks, or two outputs share a name.

    Every offline store calls this on the selections it is handed, so a direct protocol call is
    checked as strictly as a request that went through :func:`resolve`.
    """
    for sel in selections:
        for name in sel.features:
            sel.view.feature(name)  # FeatureNotFoundError
    check_collisions(selections, full_feature_names)


def check_collisions(selections: Sequence[ViewSelection], full_feature_names: bool) -> None:
    """Raise :class:`FeatureNameCollisionError` if two outputs would share a name."""
    seen: dict[str, str] = {}
    keys = {k for s in selections for k in s.entity_columns()}
    for sel in selections:
        for out in sel.output_names(full_feature_names):
            if out in seen or out in keys:
                other = seen.get(out, "a join key")
                raise FeatureNameCollisionError(
                    f"feature name '{out}' is requested from both {other} and '{sel.prefix}'; "
                    "pass full_feature_names=True to name columns 'view__feature'"
                )
            seen[out] = f"'{sel.prefix}'"
