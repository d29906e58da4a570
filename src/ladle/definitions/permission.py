"""``Permission``: who may do what to which objects, with Feast's names and semantics.

>>> Permission(
...     name="analysts_read",
...     types=[FeatureView, FeatureService],
...     name_patterns=["prices_.*"],
...     actions=READ,
...     policy=RoleBasedPolicy(roles=["analyst"]),
... )

A permission *matches* a resource when the resource's type is one of ``types``, its whole name
matches one of ``name_patterns`` (none given: every name) and it carries every ``required_tags``
entry; it *grants* an action when it matches, lists the action and its policy accepts the caller.
How permissions are enforced (deny by default once one exists) is in docs/security.md.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ladle.definitions._common import check_name, check_tags
from ladle.definitions.entity import Entity
from ladle.definitions.feature_service import FeatureService
from ladle.definitions.feature_view import FeatureView
from ladle.definitions.on_demand import OnDemandFeatureView
from ladle.definitions.sources import DataSource
from ladle.errors import DefinitionError


class AuthzedAction(enum.Enum):
    """An action a permission can grant (Feast's ``AuthzedAction``; values as Feast's)."""

    CREATE = "create"
    DESCRIBE = "describe"
    UPDATE = "update"
    DELETE = "delete"
    READ_ONLINE = "read_online"
    READ_OFFLINE = "read_offline"
    WRITE_ONLINE = "write_online"
    WRITE_OFFLINE = "write_offline"


#: Every action.
ALL_ACTIONS: list[AuthzedAction] = list(AuthzedAction)
#: Reading feature values, online and offline.
READ: list[AuthzedAction] = [AuthzedAction.READ_ONLINE, AuthzedAction.READ_OFFLINE]
#: Writing feature values, online and offline.
WRITE: list[AuthzedAction] = [AuthzedAction.WRITE_ONLINE, AuthzedAction.WRITE_OFFLINE]
#: Managing definitions.
CRUD: list[AuthzedAction] = [
    AuthzedAction.CREATE,
    AuthzedAction.DESCRIBE,
    AuthzedAction.UPDATE,
    AuthzedAction.DELETE,
]


class Caller(Protocol):
    """What a policy looks at: a :class:`~ladle.security.principal.Principal` has these."""

    @property
    def roles(self) -> frozenset[str]:
        """Role names."""
        ...

    @property
    def groups(self) -> frozenset[str]:
        """Group names."""
        ...

    @property
    def namespaces(self) -> frozenset[str]:
        """Namespaces (Kubernetes)."""
        ...


def _names(kind: str, what: str, values: Iterable[str] | None, *, required: bool = True) -> tuple[str, ...]:
    if isinstance(values, str) or values is None or not all(isinstance(v, str) and v for v in values):
        raise DefinitionError(f"{kind}: {what} must be a list of non-empty strings, got {values!r}")
    out = tuple(sorted(set(values)))
    if required and not out:
        raise DefinitionError(f"{kind}: give at least one of {what} (an empty policy would accept nobody)")
    return out


class Policy:
    """Decides whether a caller is accepted; the subclasses are Feast's policies."""

    kind = ""

    def accepts(self, caller: Caller) -> bool:
        """Whether this policy accepts ``caller``."""
        raise NotImplementedError

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(self.kind)


class RoleBasedPolicy(Policy):
    """Accepts callers with any of ``roles``."""

    kind = "role_based"

    def __init__(self, roles: Sequence[str]) -> None:
        self.roles = _names("RoleBasedPolicy", "roles", roles)

    def accepts(self, caller: Caller) -> bool:
        """True if the caller has one of the roles."""
        return not caller.roles.isdisjoint(self.roles)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"type": self.kind, "roles": list(self.roles)}

    def __repr__(self) -> str:
        return f"RoleBasedPolicy(roles={list(self.roles)!r})"


class GroupBasedPolicy(Policy):
    """Accepts callers in any of ``groups``."""

    kind = "group_based"

    def __init__(self, groups: Sequence[str]) -> None:
        self.groups = _names("GroupBasedPolicy", "groups", groups)

    def accepts(self, caller: Caller) -> bool:
        """True if the caller is in one of the groups."""
        return not caller.groups.isdisjoint(self.groups)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"type": self.kind, "groups": list(self.groups)}

    def __repr__(self) -> str:
        return f"GroupBasedPolicy(groups={list(self.groups)!r})"


class NamespaceBasedPolicy(Policy):
    """Accepts callers from any of ``namespaces`` (Kubernetes service accounts)."""

    kind = "namespace_based"

    def __init__(self, namespaces: Sequence[str]) -> None:
        self.namespaces = _names("NamespaceBasedPolicy", "namespaces", namespaces)

    def accepts(self, caller: Caller) -> bool:
        """True if the caller is in one of the namespaces."""
        return not caller.namespaces.isdisjoint(self.namespaces)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"type": self.kind, "namespaces": list(self.namespaces)}

    def __repr__(self) -> str:
        return f"NamespaceBasedPolicy(namespaces={list(self.namespaces)!r})"


class CombinedGroupNamespacePolicy(Policy):
    """Accepts callers in any of ``groups`` or from any of ``namespaces`` (either is enough, as in Feast)."""

    kind = "combined_group_namespace"

    def __init__(self, groups: Sequence[str] = (), namespaces: Sequence[str] = ()) -> None:
        self.groups = _names("CombinedGroupNamespacePolicy", "groups", groups, required=False)
        self.namespaces = _names("CombinedGroupNamespacePolicy", "namespaces", namespaces, required=False)
        if not self.groups and not self.namespaces:
            raise DefinitionError("CombinedGroupNamespacePolicy: give groups, namespaces or both")

    def accepts(self, caller: Caller) -> bool:
        """True if the caller is in one of the groups or one of the namespaces."""
        return not caller.groups.isdisjoint(self.groups) or not caller.namespaces.isdisjoint(self.namespaces)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"type": self.kind, "groups": list(self.groups), "namespaces": list(self.namespaces)}

    def __repr__(self) -> str:
        return f"CombinedGroupNamespacePolicy(groups={list(self.groups)!r}, namespaces={list(self.namespaces)!r})"


class AllowAllPolicy(Policy):
    """Accepts every authenticated caller (use :data:`AllowAll`)."""

    kind = "allow_all"

    def accepts(self, caller: Caller) -> bool:
        """Always True."""
        return True

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"type": self.kind}

    def __repr__(self) -> str:
        return "AllowAll"


#: The policy accepting everyone (Feast's ``AllowAll``).
AllowAll = AllowAllPolicy()


def policy_from_spec(spec: Mapping[str, Any]) -> Policy:
    """Rebuild a policy from its :meth:`Policy.to_spec` output."""
    kind = spec.get("type")
    if kind == "role_based":
        return RoleBasedPolicy(spec["roles"])
    if kind == "group_based":
        return GroupBasedPolicy(spec["groups"])
    if kind == "namespace_based":
        return NamespaceBasedPolicy(spec["namespaces"])
    if kind == "combined_group_namespace":
        return CombinedGroupNamespacePolicy(spec.get("groups", ()), spec.get("namespaces", ()))
    if kind == "allow_all":
        return AllowAll
    raise DefinitionError(f"unknown policy type {kind!r}")


#: Resource kinds a permission can name (the registry's kinds), with their readable labels.
RESOURCE_KINDS: dict[str, str] = {
    "entity": "entity",
    "data_source": "data source",
    "feature_view": "feature view",
    "feature_service": "feature service",
    "permission": "permission",
    "on_demand_feature_view": "on-demand feature view",
}


def _type_kind(name: str, value: object) -> str:
    if isinstance(value, str):
        kind = value.strip().lower().replace(" ", "_").replace("-", "_")
        if kind.endswith("s") and kind[:-1] in RESOURCE_KINDS:
            kind = kind[:-1]
        if kind in RESOURCE_KINDS:
            return kind
    elif isinstance(value, type):
        for cls, kind in _CLASS_KINDS:
            if issubclass(value, cls):
                return kind
    known = "Entity, DataSource (FileSource, PushSource), FeatureView, FeatureService, Permission"
    raise DefinitionError(f"permission '{name}': {value!r} is not a resource type; use {known}")


def _action(name: str, value: object) -> AuthzedAction:
    if isinstance(value, AuthzedAction):
        return value
    if isinstance(value, str):
        key = value.strip().upper()
        if key in AuthzedAction.__members__:
            return AuthzedAction[key]
        for action in AuthzedAction:
            if action.value == value.strip().lower():
                return action
    known = ", ".join(AuthzedAction.__members__)
    raise DefinitionError(f"permission '{name}': unknown action {value!r}; use {known} (or READ, WRITE, CRUD)")


class Permission:
    """Grants ``actions`` on matching resources to the callers ``policy`` accepts (Feast's ``Permission``).

    ``types`` are definition classes (``FeatureView``, ``FeatureService``, ``Entity``,
    ``DataSource`` or one of its subclasses, ``Permission``) or their registry names
    (``"feature_view"``); none given means every type. ``name_patterns`` are regular expressions
    matched against the whole name (any one suffices). ``required_tags`` must all be on the resource.
    """

    def __init__(
        self,
        name: str,
        types: Sequence[type | str] | type | str | None = None,
        name_patterns: Sequence[str] | str | None = None,
        actions: Sequence[AuthzedAction | str] | AuthzedAction | str = ALL_ACTIONS,
        policy: Policy = AllowAll,
        tags: Mapping[str, str] | None = None,
        required_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.name = check_name("permission", name)
        if types is None:
            kinds = tuple(sorted(RESOURCE_KINDS))
        else:
            given = [types] if isinstance(types, (str, type)) else list(types)
            if not given:
                raise DefinitionError(f"permission '{name}': types is empty (leave it out to mean every type)")
            kinds = tuple(sorted({_type_kind(name, t) for t in given}))
        self.types: tuple[str, ...] = kinds
        patterns = [name_patterns] if isinstance(name_patterns, str) else list(name_patterns or [])
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except (re.error, TypeError) as exc:
                raise DefinitionError(f"permission '{name}': name pattern {pattern!r} is not a regex: {exc}") from None
        self.name_patterns: tuple[str, ...] = tuple(patterns)
        self._compiled = tuple(compiled)
        chosen = [actions] if isinstance(actions, (str, AuthzedAction)) else list(actions)
        if not chosen:
            raise DefinitionError(f"permission '{name}': actions is empty; it would grant nothing")
        self.actions: frozenset[AuthzedAction] = frozenset(_action(name, a) for a in chosen)
        if not isinstance(policy, Policy):
            raise DefinitionError(
                f"permission '{name}': policy must be RoleBasedPolicy, GroupBasedPolicy, NamespaceBasedPolicy, "
                f"CombinedGroupNamespacePolicy or AllowAll, got {policy!r}"
            )
        self.policy = policy
        self.tags = check_tags("permission", name, tags)
        self.required_tags = check_tags("permission", name, required_tags)

    def matches(self, kind: str, name: str, tags: Mapping[str, str]) -> bool:
        """Whether a resource of ``kind`` called ``name`` with ``tags`` is one this permission is about."""
        if kind not in self.types:
            return False
        if self._compiled and not any(p.fullmatch(name) for p in self._compiled):
            return False
        return all(tags.get(k) == v for k, v in self.required_tags.items())

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {
            "name": self.name,
            "types": list(self.types),
            "name_patterns": list(self.name_patterns),
            "actions": sorted(a.name for a in self.actions),
            "policy": self.policy.to_spec(),
            "tags": dict(sorted(self.tags.items())),
            "required_tags": dict(sorted(self.required_tags.items())),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Permission:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            types=spec["types"],
            name_patterns=spec.get("name_patterns") or None,
            actions=spec["actions"],
            policy=policy_from_spec(spec["policy"]),
            tags=spec.get("tags"),
            required_tags=spec.get("required_tags"),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Permission) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(("permission", self.name))

    def __repr__(self) -> str:
        return f"Permission(name={self.name!r})"


#: Every resource type (Feast's ``ALL_RESOURCE_TYPES``).
ALL_RESOURCE_TYPES: list[type] = [Entity, DataSource, FeatureView, FeatureService, Permission, OnDemandFeatureView]


def resource_kind(obj: object) -> str:
    """The registry kind of a definition object (``"feature_view"`` …), as permissions name it."""
    for cls, kind in _CLASS_KINDS:
        if isinstance(obj, cls):
            return kind
    raise DefinitionError(f"{obj!r} is not a definition a permission can be about")


_CLASS_KINDS: tuple[tuple[type, str], ...] = (
    (Entity, "entity"),
    (DataSource, "data_source"),
    (FeatureView, "feature_view"),
    (FeatureService, "feature_service"),
    (Permission, "permission"),
    (OnDemandFeatureView, "on_demand_feature_view"),
)
