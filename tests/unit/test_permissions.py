"""Permission definitions and the decision rules: validation, matching, deny by default, AFFIRMATIVE."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ladle
from ladle import (
    ALL_ACTIONS,
    CRUD,
    READ,
    WRITE,
    AllowAll,
    AuthzedAction,
    CombinedGroupNamespacePolicy,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float64,
    GroupBasedPolicy,
    NamespaceBasedPolicy,
    Permission,
    PushSource,
    RoleBasedPolicy,
)
from ladle.errors import DefinitionError, FutureEventTimeError, PermissionDeniedError
from ladle.registry.base import RegistrySnapshot
from ladle.retrieval.push import check_future_skew
from ladle.security import audit
from ladle.security.permissions import Enforcer, Resource, why_denied
from ladle.security.principal import ANONYMOUS, Principal
from ladle.types import EVENT_TIMESTAMP

ALICE = Principal("alice", roles=frozenset({"analyst"}), groups=frozenset({"quants"}), method="api_key")
BOB = Principal("bob", roles=frozenset({"writer"}), namespaces=frozenset({"ingest"}), method="oidc")
PRICES = Resource("feature_view", "prices", (("team", "markets"),))


def test_names_are_feasts_and_exported() -> None:
    for name in ("Permission", "AuthzedAction", "RoleBasedPolicy", "GroupBasedPolicy", "NamespaceBasedPolicy",
                 "CombinedGroupNamespacePolicy", "AllowAll", "ALL_ACTIONS", "READ", "WRITE", "CRUD"):  # fmt: skip
        assert name in ladle.__all__
        assert getattr(ladle, name) is getattr(ladle.definitions, name)
    assert set(READ) == {AuthzedAction.READ_ONLINE, AuthzedAction.READ_OFFLINE}
    assert set(WRITE) == {AuthzedAction.WRITE_ONLINE, AuthzedAction.WRITE_OFFLINE}
    assert set(CRUD) == {AuthzedAction.CREATE, AuthzedAction.DESCRIBE, AuthzedAction.UPDATE, AuthzedAction.DELETE}
    assert len(ALL_ACTIONS) == 8


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Permission("p", name_patterns=["prices_("]), "not a regex"),
        (lambda: Permission("p", actions=["READ_EVERYTHING"]), "unknown action 'READ_EVERYTHING'"),
        (lambda: Permission("p", actions=[]), "actions is empty"),
        (lambda: Permission("p", policy=RoleBasedPolicy(roles=[])), "empty policy"),
        (lambda: Permission("p", policy=GroupBasedPolicy(groups=[])), "empty policy"),
        (lambda: Permission("p", policy=NamespaceBasedPolicy(namespaces=[])), "empty policy"),
        (lambda: Permission("p", policy=CombinedGroupNamespacePolicy()), "give groups, namespaces or both"),
        (lambda: Permission("p", policy=None), "policy must be"),  # type: ignore[arg-type]
        (lambda: Permission("p", types=[int]), "not a resource type"),
        (lambda: Permission("p", types=[]), "types is empty"),
        (lambda: Permission("bad name"), "permission name 'bad name' is invalid"),
        (lambda: Permission("p", policy=RoleBasedPolicy(roles="admin")), "list of non-empty strings"),
    ],
)
def test_invalid_permissions_are_definition_errors(make: object, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        make()  # type: ignore[operator]


def test_types_aliases_and_spec_round_trip() -> None:
    perm = Permission(
        name="readers",
        types=[FeatureView, PushSource, "feature_services"],
        name_patterns="prices_.*",
        actions=[*READ, "describe"],
        policy=CombinedGroupNamespacePolicy(groups=["quants"], namespaces=["ml"]),
        tags={"owner": "sec"},
        required_tags={"team": "markets"},
    )
    assert perm.types == ("data_source", "feature_service", "feature_view")
    spec = perm.to_spec()
    assert spec["actions"] == ["DESCRIBE", "READ_OFFLINE", "READ_ONLINE"]
    assert json.loads(json.dumps(spec)) == spec
    again = Permission.from_spec(spec)
    assert again == perm and again.to_spec() == spec
    assert Permission("all").types == (
        "data_source", "entity", "feature_service", "feature_view", "on_demand_feature_view", "permission",
    )  # fmt: skip
    assert Permission.from_spec(Permission("x", policy=AllowAll).to_spec()).policy is AllowAll


def test_matching_needs_type_whole_name_and_every_required_tag() -> None:
    perm = Permission("p", types=[FeatureView], name_patterns=["prices", "wx_.*"], required_tags={"team": "markets"})
    assert perm.matches("feature_view", "prices", {"team": "markets", "x": "y"})
    assert perm.matches("feature_view", "wx_daily", {"team": "markets"})
    assert not perm.matches("feature_view", "prices_v2", {"team": "markets"})  # the whole name must match
    assert not perm.matches("feature_view", "prices", {"team": "other"})
    assert not perm.matches("feature_service", "prices", {"team": "markets"})


def test_policies_accept_by_role_group_namespace() -> None:
    assert RoleBasedPolicy(roles=["analyst"]).accepts(ALICE)
    assert not RoleBasedPolicy(roles=["admin"]).accepts(ALICE)
    assert GroupBasedPolicy(groups=["quants"]).accepts(ALICE)
    assert NamespaceBasedPolicy(namespaces=["ingest"]).accepts(BOB)
    assert not NamespaceBasedPolicy(namespaces=["ingest"]).accepts(ALICE)
    combined = CombinedGroupNamespacePolicy(groups=["quants"], namespaces=["ingest"])
    assert combined.accepts(ALICE) and combined.accepts(BOB)
    assert not combined.accepts(ANONYMOUS)
    assert AllowAll.accepts(ANONYMOUS)


def test_no_permissions_allow_everything_and_one_denies_the_rest() -> None:
    assert why_denied([], ALICE, AuthzedAction.DELETE, PRICES) is None
    readers = Permission("readers", types=[FeatureView], actions=READ, policy=RoleBasedPolicy(roles=["analyst"]))
    assert why_denied([readers], ALICE, AuthzedAction.READ_ONLINE, PRICES) is None
    assert why_denied([readers], ALICE, AuthzedAction.WRITE_ONLINE, PRICES) == "no permission grants it"
    assert why_denied([readers], BOB, AuthzedAction.READ_ONLINE, PRICES) == (
        "permission 'readers' matches but its policy does not accept bob"
    )
    service = Resource("feature_service", "model", ())
    assert why_denied([readers], ALICE, AuthzedAction.READ_ONLINE, service) == "no permission grants it"


_ROLES = st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=2)
_PERMISSION = st.builds(
    lambda i, types, actions, roles, pattern: Permission(
        f"p{i}", types=types, actions=actions, name_patterns=pattern, policy=RoleBasedPolicy(roles=sorted(roles))
    ),
    st.integers(0, 1000),
    st.lists(st.sampled_from(["feature_view", "feature_service", "entity"]), min_size=1, max_size=2),
    st.lists(st.sampled_from(list(AuthzedAction)), min_size=1, max_size=3),
    st.frozensets(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2),
    st.sampled_from([None, "x.*", "y"]),
)
_RESOURCE = st.builds(
    Resource, st.sampled_from(["feature_view", "feature_service", "entity"]), st.sampled_from(["x1", "y", "z"])
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PERMISSION, max_size=4), _PERMISSION, _ROLES, st.sampled_from(list(AuthzedAction)), _RESOURCE)
def test_decisions_are_affirmative_and_deny_by_default(
    permissions: list[Permission], extra: Permission, roles: frozenset[str], action: AuthzedAction, resource: Resource
) -> None:
    caller = Principal("u", roles=roles, method="api_key")
    allowed = why_denied(permissions, caller, action, resource) is None
    granting = [
        p
        for p in permissions
        if action in p.actions and p.matches(resource.kind, resource.name, {}) and p.policy.accepts(caller)
    ]
    # Allowed exactly when there are no permissions or one grants it: deny by default, AFFIRMATIVE.
    assert allowed == (not permissions or bool(granting))
    # Adding a permission never takes a grant away (if permissions existed before).
    if permissions and allowed:
        assert why_denied([*permissions, extra], caller, action, resource) is None


def _snapshot(version: int, *permissions: Permission) -> RegistrySnapshot:
    return RegistrySnapshot("proj", version, permissions={p.name: p for p in permissions})


def test_enforcer_is_off_for_anonymous_under_no_auth_and_on_when_auth_is_configured() -> None:
    snapshot = _snapshot(1, Permission("readers", actions=READ, policy=RoleBasedPolicy(roles=["analyst"])))
    Enforcer(enabled=False).check(snapshot, ANONYMOUS, AuthzedAction.DELETE, [PRICES])
    with pytest.raises(PermissionDeniedError) as denied:
        Enforcer(enabled=True).check(snapshot, ANONYMOUS, AuthzedAction.DELETE, [PRICES])
    assert str(denied.value) == "anonymous may not DELETE feature view 'prices' (no permission grants it)"
    assert (denied.value.action, denied.value.resource) == ("DELETE", "feature view 'prices'")
    # An authenticated principal is held to the permissions even when the config says no_auth.
    with pytest.raises(PermissionDeniedError):
        Enforcer(enabled=False).check(snapshot, BOB, AuthzedAction.READ_ONLINE, [PRICES])


def test_enforcer_caches_per_registry_version() -> None:
    enforcer = Enforcer(enabled=True)
    grant = Permission("readers", actions=READ, policy=RoleBasedPolicy(roles=["analyst"]))
    enforcer.check(_snapshot(1, grant), ALICE, AuthzedAction.READ_ONLINE, [PRICES])
    assert len(enforcer._decisions) == 1
    enforcer.check(_snapshot(1, grant), ALICE, AuthzedAction.READ_ONLINE, [PRICES])
    assert len(enforcer._decisions) == 1  # the second check was the cached decision
    narrower = Permission("readers", actions=READ, policy=RoleBasedPolicy(roles=["admin"]))
    with pytest.raises(PermissionDeniedError, match="does not accept alice"):
        enforcer.check(_snapshot(2, narrower), ALICE, AuthzedAction.READ_ONLINE, [PRICES])


def test_list_filtering_keeps_only_describable_objects() -> None:
    commodity = Entity(name="commodity", join_keys=["code"])
    station = Entity(name="station", join_keys=["id"], tags={"team": "weather"})
    grant = Permission("see_weather", actions=[AuthzedAction.DESCRIBE], required_tags={"team": "weather"})
    kept = Enforcer(enabled=True).permitted(_snapshot(1, grant), ALICE, AuthzedAction.DESCRIBE, [commodity, station])
    assert kept == [station]


def test_denials_write_an_audit_line(caplog: pytest.LogCaptureFixture) -> None:
    snapshot = _snapshot(3, Permission("readers", actions=READ, policy=RoleBasedPolicy(roles=["analyst"])))
    with caplog.at_level(logging.INFO, logger="ladle.audit"), pytest.raises(PermissionDeniedError):
        Enforcer(enabled=True).check(snapshot, BOB, AuthzedAction.WRITE_ONLINE, [PRICES], event="push", source="rest")
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ladle.audit"]
    assert line["principal"] == "bob" and line["method"] == "oidc"
    assert line["event"] == "push" and line["actions"] == ["WRITE_ONLINE"]
    assert line["resources"] == ["feature_view:prices"] and line["outcome"] == "denied"
    assert line["source"] == "rest" and line["project"] == "proj" and "bob may not WRITE_ONLINE" in line["detail"]
    datetime.fromisoformat(line["time"])


def test_audit_is_silent_when_its_logger_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ladle.audit"):
        assert audit.audited("push", ALICE, ["WRITE_ONLINE"], lambda: ["x"], lambda: 3, source="sdk", project="p") == 3
    assert not [r for r in caplog.records if r.name == "ladle.audit"]


def _view() -> FeatureView:
    source = FileSource(path="x.parquet", timestamp_field="event_timestamp")
    entity = Entity(name="commodity", join_keys=["code"])
    return FeatureView(name="prices", entities=[entity], schema=[Field(name="p", dtype=Float64)], source=source)


def test_future_skew_names_the_limit_and_the_time() -> None:
    future = datetime.now(UTC) + timedelta(hours=2)
    rows = pa.table({EVENT_TIMESTAMP: pa.array([datetime.now(UTC), future], pa.timestamp("us", tz="UTC"))})
    with pytest.raises(FutureEventTimeError) as error:
        check_future_skew(_view(), rows, 300)
    message = str(error.value)
    assert "the limit is 300 s (write_safety.max_future_skew_seconds)" in message
    assert future.replace(microsecond=0).isoformat()[:19] in message and "nothing was written" in message
    check_future_skew(_view(), rows, 0)  # 0 and None turn the check off
    check_future_skew(_view(), rows, None)
    check_future_skew(_view(), rows, 3 * 3600)


def test_feature_service_resources_carry_tags() -> None:
    view = _view()
    service = FeatureService(name="model", features=[view], tags={"tier": "gold"})
    assert Resource.of(service) == Resource("feature_service", "model", (("tier", "gold"),))
    assert Resource.of(view).label == "feature view 'prices'"
