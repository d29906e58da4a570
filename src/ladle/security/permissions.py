"""Authorization: the registry's :class:`~ladle.definitions.Permission` objects applied to a principal.

Rules (docs/security.md, "Permissions"):

* enforcement is on when ``auth:`` is configured (or the caller was authenticated); under
  ``auth: no_auth`` nothing is checked, as in Feast (there is no identity to check);
* a project with no permission object allows everything;
* once a project has one, a resource no permission matches is denied (deny by default);
* AFFIRMATIVE: any permission that matches the resource, lists the action and whose policy
  accepts the caller grants it.

Decisions are cached per (project, registry version, principal, action, resources), so a repeated
check costs one dict lookup; a new registry version starts a new cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ladle.definitions import FeatureService
from ladle.definitions.permission import RESOURCE_KINDS, AuthzedAction, Permission, resource_kind
from ladle.errors import PermissionDeniedError
from ladle.security import audit
from ladle.security.principal import Principal

if TYPE_CHECKING:
    from ladle.registry.base import RegistrySnapshot
    from ladle.repo.diff import ObjectDiff


@dataclass(frozen=True, slots=True)
class Resource:
    """Something a permission can be about: a registry kind, a name and the object's tags."""

    kind: str
    name: str
    tags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, obj: Any) -> Resource:
        """The resource of a definition object (an Entity, a FeatureView …)."""
        return cls(resource_kind(obj), obj.name, tuple(sorted(obj.tags.items())))

    @property
    def label(self) -> str:
        """``feature view 'prices'``."""
        return f"{RESOURCE_KINDS.get(self.kind, self.kind)} '{self.name}'"

    @property
    def ref(self) -> str:
        """``feature_view:prices`` (the audit log's form)."""
        return f"{self.kind}:{self.name}"


def why_denied(
    permissions: Iterable[Permission], principal: Principal, action: AuthzedAction, resource: Resource
) -> str | None:
    """None if some permission grants ``action`` on ``resource`` to ``principal``; else why not.

    With no permissions at all everything is allowed; otherwise deny by default (AFFIRMATIVE).
    """
    listed = list(permissions)
    if not listed:
        return None
    tags = dict(resource.tags)
    matching = [p for p in listed if action in p.actions and p.matches(resource.kind, resource.name, tags)]
    if any(p.policy.accepts(principal) for p in matching):
        return None
    if not matching:
        return "no permission grants it"
    names = ", ".join(f"'{p.name}'" for p in matching)
    return f"permission {names} matches but its policy does not accept {principal.name}"


def denial_error(principal: Principal, action: AuthzedAction, resource: Resource, why: str) -> PermissionDeniedError:
    """The error naming the caller, the action and the resource."""
    return PermissionDeniedError(
        f"{principal.name} may not {action.name} {resource.label} ({why})",
        action=action.name,
        resource=resource.label,
    )


_CACHE_LIMIT = 8192


class Enforcer:
    """Checks calls against a snapshot's permissions; one per :class:`~ladle.store.FeatureStore`.

    ``enabled`` is True when ``auth:`` is configured. A principal that an authenticator checked is
    held to the permissions even when ``enabled`` is False (a server given its own authenticator).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._decisions: dict[Any, tuple[AuthzedAction, Resource, str] | None] = {}
        self._granted_reads: set[Any] = set()
        self._lock = threading.Lock()

    def applies(self, principal: Principal) -> bool:
        """Whether calls of ``principal`` are checked at all (False under no_auth)."""
        return self.enabled or principal.method != "none"

    def check(
        self,
        snapshot: RegistrySnapshot,
        principal: Principal,
        actions: AuthzedAction | Sequence[AuthzedAction],
        resources: Sequence[Resource],
        *,
        event: str = "",
        source: str = "sdk",
    ) -> None:
        """Return if every action is granted on every resource; else audit the denial and raise.

        :class:`~ladle.errors.PermissionDeniedError` names the first action and resource refused.
        """
        if not snapshot.permissions or not self.applies(principal):
            return
        wanted = (actions,) if isinstance(actions, AuthzedAction) else tuple(actions)
        key = (snapshot.project, snapshot.version, principal, wanted, tuple(resources))
        try:
            denied = self._decisions[key]
        except KeyError:
            denied = self._decide(snapshot.permissions, principal, wanted, resources)
            with self._lock:
                if len(self._decisions) >= _CACHE_LIMIT:
                    self._decisions.clear()  # versions move on; old entries are dead weight
                self._decisions[key] = denied
        if denied is not None:
            action, resource, why = denied
            error = denial_error(principal, action, resource, why)
            audit.record(
                event or action.name.lower(),
                principal,
                [a.name for a in wanted],
                [r.ref for r in resources],
                outcome="denied",
                source=source,
                project=snapshot.project,
                detail=str(error),
            )
            raise error

    def check_read(
        self,
        snapshot: RegistrySnapshot,
        principal: Principal,
        action: AuthzedAction,
        features: Sequence[str] | FeatureService | str,
        *,
        event: str,
        source: str,
    ) -> None:
        """:meth:`check` of a read (READ_ONLINE / READ_OFFLINE) of ``features``; a repeated granted read
        of the same references pays one set lookup."""
        if not snapshot.permissions or not self.applies(principal):
            return
        refs: Any = None  # a FeatureService object is not memoized (its Resource is cheap)
        if isinstance(features, str):
            refs = features
        elif isinstance(features, (list, tuple)):
            refs = tuple(features)
        key = (snapshot.project, snapshot.version, principal, action, refs)
        try:
            if refs is not None and key in self._granted_reads:
                return
        except TypeError:  # unhashable references: the read itself will refuse them
            refs = None
        self.check(snapshot, principal, action, read_resources(snapshot, features), event=event, source=source)
        if refs is not None:
            with self._lock:
                if len(self._granted_reads) >= _CACHE_LIMIT:
                    self._granted_reads.clear()
                self._granted_reads.add(key)

    def permitted(
        self, snapshot: RegistrySnapshot, principal: Principal, action: AuthzedAction, objects: Iterable[Any]
    ) -> list[Any]:
        """The objects on which ``principal`` has ``action`` (used to filter the ``list_*`` calls)."""
        listed = list(objects)
        if not snapshot.permissions or not self.applies(principal):
            return listed
        perms = snapshot.permissions.values()
        return [o for o in listed if why_denied(perms, principal, action, Resource.of(o)) is None]

    @staticmethod
    def _decide(
        permissions: Mapping[str, Permission],
        principal: Principal,
        actions: Sequence[AuthzedAction],
        resources: Sequence[Resource],
    ) -> tuple[AuthzedAction, Resource, str] | None:
        for resource in resources:
            for action in actions:
                why = why_denied(permissions.values(), principal, action, resource)
                if why is not None:
                    return action, resource, why
        return None


def read_resources(snapshot: RegistrySnapshot, features: Sequence[str] | FeatureService | str) -> list[Resource]:
    """What a read needs the READ action on: the feature service when one is used, else each view."""
    if isinstance(features, FeatureService):
        return [Resource.of(features)]
    if isinstance(features, str):
        return [Resource.of(snapshot.feature_service(features))]
    # The view of each "view:feature" (or bare "view"); references to no view are left to the read,
    # which refuses them with its own error before anything is read. A pinned "view@v3" needs the view's.
    names = dict.fromkeys(ref.partition(":")[0].partition("@")[0] for ref in features if isinstance(ref, str))
    views = snapshot.feature_views
    odfvs = snapshot.on_demand_feature_views
    # An on-demand view needs READ on itself and on the views it reads.
    inputs = [i.view_name for name in names if name in odfvs for i in odfvs[name].view_inputs]
    found = [Resource.of(odfvs[name]) for name in names if name in odfvs]
    return found + [Resource.of(views[name]) for name in dict.fromkeys([*names, *inputs]) if name in views]


#: The actions a push needs on each view it feeds, by ``to``.
PUSH_ACTIONS: dict[str, tuple[AuthzedAction, ...]] = {
    "online": (AuthzedAction.WRITE_ONLINE,),
    "offline": (AuthzedAction.WRITE_OFFLINE,),
    "online_and_offline": (AuthzedAction.WRITE_ONLINE, AuthzedAction.WRITE_OFFLINE),
}

#: The action each kind of registry change needs.
CHANGE_ACTIONS = {"add": AuthzedAction.CREATE, "change": AuthzedAction.UPDATE, "remove": AuthzedAction.DELETE}


def check_changes(
    enforcer: Enforcer,
    snapshot: RegistrySnapshot,
    principal: Principal,
    changes: Sequence[tuple[ObjectDiff, Any]],
    *,
    event: str,
    source: str,
) -> None:
    """CREATE / UPDATE / DELETE on each changed object, against the permissions already registered.

    A change is checked on the object as it was and as it will be (tags may move it between
    permissions), so nobody can retag an object into their reach.
    """
    if not snapshot.permissions or not enforcer.applies(principal):
        return
    for diff, obj in changes:
        resources = [Resource.of(obj)]
        before = snapshot.objects(diff.kind).get(diff.name) if diff.action == "change" else None
        if before is not None and Resource.of(before) != resources[0]:
            resources.append(Resource.of(before))
        enforcer.check(snapshot, principal, CHANGE_ACTIONS[diff.action], resources, event=event, source=source)


def auth_configured(auth: Mapping[str, Any]) -> bool:
    """Whether an ``auth:`` section turns enforcement on (anything but ``no_auth``)."""
    return str(auth.get("type", "no_auth")) != "no_auth"
