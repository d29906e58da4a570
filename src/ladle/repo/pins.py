"""The pin check of plan and apply: would this change break a consumer pinned to an older version?

A feature service that pins a view (``pins={"prices": 3}``) reads version 3's definition, but the
online rows it reads are the view's (one online table per view name, docs/versions.md). So a change
of the latest view breaks the pin when the online rows stop being what version 3 promised:

* the view is deleted (its online rows go with it);
* its entities (join keys) change, or it stops being online;
* a feature the service reads is removed or changes type;
* its ttl changes (the brief's rule: a pinned consumer was tuned to the pinned ttl);
* its source or transformation changes (the online values would be computed another way).

A split's arm pinned to a stored service version (``"model_b@v1"``) is checked the same way, and
the views that version reads unpinned must still exist with the features it reads.

:func:`pin_conflicts` lists the broken pins of one registry state; plan and apply report the ones
a change introduces (present after it, absent before), so a conflict accepted once with
``--force`` is not raised again on every later apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ladle.definitions import FeatureService, FeatureView
from ladle.definitions.feature_service import parse_pinned
from ladle.errors import DefinitionError
from ladle.registry.base import canonical_spec

#: A view spec's keys that change nothing a pinned reader sees (the features are compared one by one).
_HARMLESS = frozenset({"name", "description", "tags", "owner", "features", "entity_columns", "offline"})

SpecOf = Callable[[str, str, int], Mapping[str, Any]]  # (kind, name, version) -> stored spec


def pin_conflicts(
    services: Mapping[str, FeatureService], views: Mapping[str, FeatureView], spec_of: SpecOf
) -> list[str]:
    """One line per pin that ``views`` (the latest definitions) break, over every service's pins.

    Raises VersionNotFoundError for a pin of a version that was never stored, DefinitionError for a
    pinned projection that reads a feature its pinned version lacks.
    """
    out: list[str] = []
    for service in services.values():
        for label, pinned_service in _pinning(service, spec_of):
            for proj in pinned_service.projections:
                version = pinned_service.pins.get(proj.view_name)
                if version is None:  # an arm's stored service version reading a view unpinned
                    out += _unpinned_breaks(label, proj.view_name, proj.features, views)
                    continue
                pinned = canonical_spec(spec_of("feature_view", proj.view_name, version))
                ref = f"{proj.view_name}@v{version}"
                _check_features(label, ref, pinned, proj.features)
                current = views.get(proj.view_name)
                latest = None if current is None else canonical_spec(current.to_spec())
                problems = _breaks(pinned, latest, proj.features)
                out += [f"{label} pins {ref}: the latest '{proj.view_name}' {p}" for p in problems]
    return out


def _pinning(service: FeatureService, spec_of: SpecOf) -> Iterable[tuple[str, FeatureService]]:
    """The service itself if it pins views, and for a split, each arm's pinned service version."""
    if service.pins:
        yield f"feature service '{service.name}'", service
    for arm, (target, _) in service.variants.items():
        name, version = parse_pinned(target)
        if version is not None:
            yield (
                f"variant '{arm}' of '{service.name}' ({target})",
                FeatureService.from_spec(spec_of("feature_service", name, version)),
            )


def _unpinned_breaks(label: str, view: str, wanted: Iterable[str], views: Mapping[str, FeatureView]) -> list[str]:
    current = views.get(view)
    if current is None:
        return [f"{label} reads view '{view}', which is deleted"]
    return [
        f"{label} reads '{view}:{f}', which the latest '{view}' removes"
        for f in wanted
        if f not in current.feature_names
    ]


def _check_features(label: str, ref: str, pinned: Mapping[str, Any], wanted: Iterable[str]) -> None:
    names = [f["name"] for f in pinned.get("features", [])]
    missing = [f for f in wanted if f not in names]
    if missing:
        raise DefinitionError(f"{label} reads {missing} from {ref}, which has only {names}")


def _breaks(pinned: Mapping[str, Any], current: Mapping[str, Any] | None, wanted: Iterable[str]) -> list[str]:
    if current is None:
        return ["is deleted (its online rows would go with it)"]
    problems = []
    if pinned.get("entities") != current.get("entities"):
        problems.append(f"changes its entities {pinned.get('entities')} → {current.get('entities')}")
    if not current.get("online", True) and pinned.get("online", True):
        problems.append("is no longer online")
    features = {f["name"]: f for f in current.get("features", [])}
    old = {f["name"]: f for f in pinned.get("features", [])}
    for name in wanted:
        if name not in features:
            problems.append(f"removes feature '{name}'")
        elif features[name].get("dtype") != old[name].get("dtype"):
            problems.append(f"changes the type of '{name}' {old[name].get('dtype')} → {features[name].get('dtype')}")
    if pinned.get("ttl_seconds") != current.get("ttl_seconds"):
        problems.append(f"changes its ttl {pinned.get('ttl_seconds')}s → {current.get('ttl_seconds')}s")
    for key in sorted((set(pinned) | set(current)) - _HARMLESS - {"entities", "online", "ttl_seconds"}):
        if pinned.get(key) != current.get(key):
            problems.append(f"changes its {key} (online values would no longer be the pinned version's)")
    return problems
