"""Permissions through the SDK: every guarded FeatureStore call, denials that change nothing, audit lines.

Real embedded stores (SQLite registry and online store, Parquet offline). The caller is set on the
store directly (``store.__dict__["principal"]``): authentication is another module's job, and a
principal that an authenticator established is held to the permissions whatever the config says.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from ladle import (
    ALL_ACTIONS,
    READ,
    AuthzedAction,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    Float64,
    Permission,
    RoleBasedPolicy,
)
from ladle.errors import AuthenticationError, FutureEventTimeError, PermissionDeniedError
from ladle.security.api_keys import hash_key
from ladle.security.principal import Principal
from unit.server_repo import PROJECT, build_repo

ALICE = Principal("alice", roles=frozenset({"analyst"}), method="api_key")
BOB = Principal("bob", roles=frozenset({"writer"}), method="api_key")
ROOT = Principal("root", roles=frozenset({"admin"}), method="api_key")
CRUDE = [{"commodity_code": "crude_oil_wti"}]

PERMISSIONS = [
    Permission(
        "price_readers",
        types=[FeatureView],
        name_patterns=["commodity_price_features"],
        actions=[AuthzedAction.READ_ONLINE, AuthzedAction.DESCRIBE],
        policy=RoleBasedPolicy(roles=["analyst"]),
    ),
    Permission("model_readers", types=["feature_service"], actions=READ, policy=RoleBasedPolicy(roles=["analyst"])),
    Permission(
        "live_writers",
        types=[FeatureView],
        name_patterns=["live_prices"],
        actions=[AuthzedAction.WRITE_ONLINE],
        policy=RoleBasedPolicy(roles=["writer"]),
    ),
    Permission("admins", actions=ALL_ACTIONS, policy=RoleBasedPolicy(roles=["admin"])),
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    built = build_repo(tmp_path)
    built.store.apply(PERMISSIONS)  # under no_auth nothing is enforced: anyone may set them up
    built.store.close()
    return tmp_path


def store_as(repo: Path, principal: Principal | None) -> FeatureStore:
    store = FeatureStore(repo_path=repo)
    if principal is not None:
        store.__dict__["principal"] = principal  # what an authenticator would have returned
    return store


def live_price(repo: Path) -> Any:
    store = store_as(repo, None)
    try:
        return store.get_online_features(["live_prices:current_price"], CRUDE).to_dict()["current_price"][0]
    finally:
        store.close()


def push_frame(price: float, when: datetime | None = None) -> pd.DataFrame:
    when = when or datetime.now(UTC)
    return pd.DataFrame(
        {"commodity_code": ["crude_oil_wti"], "current_price": [price], "volume_24h": [5], "event_timestamp": [when]}
    )


def test_online_reads_need_read_online_on_each_view_or_on_the_service(repo: Path) -> None:
    store = store_as(repo, ALICE)
    got = store.get_online_features(["commodity_price_features:current_price"], CRUDE).to_dict()
    assert got["current_price"] == [78.25]
    with pytest.raises(PermissionDeniedError) as denied:
        store.get_online_features(["commodity_price_features:current_price", "station_features:name"], CRUDE)
    assert str(denied.value) == (
        "alice may not READ_ONLINE feature view 'station_features' "
        "(permission 'admins' matches but its policy does not accept alice)"
    )
    # A feature service is checked as itself (Feast's rule), not view by view.
    rows = [{"commodity_code": "crude_oil_wti", "station_id": 1}]
    assert store.get_online_features("price_model", rows).to_dict()["current_price"] == [78.25]
    with pytest.raises(PermissionDeniedError, match="bob may not READ_ONLINE feature service 'price_model'"):
        store_as(repo, BOB).get_online_features("price_model", rows)
    store.close()


def test_historical_reads_need_read_offline(repo: Path) -> None:
    store = store_as(repo, ALICE)
    entity_df = pd.DataFrame({"commodity_code": ["brent"], "event_timestamp": [datetime(2024, 2, 1, tzinfo=UTC)]})
    with pytest.raises(
        PermissionDeniedError, match="alice may not READ_OFFLINE feature view 'commodity_price_features'"
    ):
        store.get_historical_features(entity_df, ["commodity_price_features:current_price"])
    entity_df["station_id"] = [1]
    job = store.get_historical_features(entity_df, feature_service="price_model")  # READ on the service
    assert job.to_df()["current_price"].tolist() == [82.5]
    store.close()


def test_push_needs_write_online_or_offline_by_to_and_a_denial_writes_nothing(repo: Path) -> None:
    before = live_price(repo)
    bob = store_as(repo, BOB)
    with pytest.raises(PermissionDeniedError, match="bob may not WRITE_OFFLINE feature view 'live_prices'"):
        bob.push("price_push", push_frame(101.0), to="online_and_offline")
    assert live_price(repo) == before
    with pytest.raises(PermissionDeniedError, match="alice may not WRITE_ONLINE feature view 'live_prices'"):
        store_as(repo, ALICE).push("price_push", push_frame(102.0))
    assert live_price(repo) == before
    assert bob.push("price_push", push_frame(103.0)) == 1
    assert live_price(repo) == 103.0
    bob.close()


def test_write_to_online_store_and_materialize_need_write_online(repo: Path) -> None:
    bob = store_as(repo, BOB)
    frame = push_frame(1.0).assign(price_change_24h=[0.0])
    with pytest.raises(PermissionDeniedError, match="bob may not WRITE_ONLINE feature view 'commodity_price_features'"):
        bob.write_to_online_store("commodity_price_features", frame)
    alice = store_as(repo, ALICE)
    assert alice.get_online_features(["commodity_price_features:current_price"], CRUDE).to_dict()["current_price"] == [
        78.25
    ]
    with pytest.raises(PermissionDeniedError, match="WRITE_ONLINE feature view 'commodity_price_features'"):
        bob.materialize_incremental(datetime.now(UTC), ["commodity_price_features"])
    with pytest.raises(PermissionDeniedError, match="alice may not WRITE_ONLINE"):
        alice.materialize(datetime(2024, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert bob.registry.watermark("commodity_price_features") is None
    root = store_as(repo, ROOT)
    assert [r.view for r in root.materialize_incremental(datetime.now(UTC), ["commodity_price_features"])] == [
        "commodity_price_features"
    ]
    for store in (alice, bob, root):
        store.close()


def test_an_apply_with_one_denied_object_applies_nothing(repo: Path) -> None:
    creators = Permission(
        "entity_creators", types=[Entity], actions=[AuthzedAction.CREATE], policy=RoleBasedPolicy(roles=["writer"])
    )
    root = store_as(repo, ROOT)
    root.apply([creators])
    version = root.registry.version()
    bob = store_as(repo, BOB)
    region = Entity(name="region", join_keys=["region_id"])
    view = root.get_feature_view("commodity_price_features")
    changed = FeatureView(
        name=view.name, entities=view.entities, ttl=timedelta(days=1),
        schema=[Field(name="current_price", dtype=Float64)], source=view.source,
    )  # fmt: skip
    with pytest.raises(PermissionDeniedError, match="bob may not UPDATE feature view 'commodity_price_features'"):
        bob.apply([region, changed], skip_source_validation=True)
    assert bob.registry.version() == version
    assert "region" not in bob.snapshot(allow_cache=False).entities
    bob.apply([region])  # CREATE on entities is granted to writers
    assert "region" in bob.snapshot(allow_cache=False).entities
    with pytest.raises(PermissionDeniedError, match="bob may not DELETE entity 'region'"):
        bob.apply([], objects_to_delete=[region])
    with pytest.raises(PermissionDeniedError, match="bob may not DELETE"):
        bob.teardown()
    assert bob.snapshot(allow_cache=False).feature_views
    for store in (root, bob):
        store.close()


def test_get_refuses_and_list_filters_by_describe(repo: Path) -> None:
    alice = store_as(repo, ALICE)
    assert [v.name for v in alice.list_feature_views()] == ["commodity_price_features"]
    assert alice.get_feature_view("commodity_price_features").name == "commodity_price_features"
    with pytest.raises(PermissionDeniedError, match="alice may not DESCRIBE feature view 'station_features'"):
        alice.get_feature_view("station_features")
    assert alice.list_permissions() == []
    assert len(store_as(repo, ROOT).list_permissions()) == len(PERMISSIONS)
    alice.close()


def test_no_auth_and_no_permissions_enforce_nothing(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    anonymous = store_as(repo, None)
    assert anonymous.principal.method == "none"
    assert anonymous.push("price_push", push_frame(7.0)) == 1  # permissions exist, but auth is no_auth
    assert len(anonymous.list_feature_views()) == 3
    anonymous.close()
    bare = build_repo(tmp_path_factory.mktemp("bare"))
    bare.store.__dict__["principal"] = BOB
    assert bare.store.write_to_online_store("commodity_price_features", push_frame(1.0).assign(price_change_24h=[0.0]))
    bare.store.close()


def test_future_event_times_are_refused_whole(repo: Path) -> None:
    store = store_as(repo, None)
    before = live_price(repo)
    future = datetime.now(UTC) + timedelta(days=1)
    frame = pd.concat([push_frame(5.0), push_frame(6.0, future)])
    with pytest.raises(FutureEventTimeError, match=r"the limit is 300 s \(write_safety.max_future_skew_seconds\)"):
        store.push("price_push", frame, to="online_and_offline")
    assert live_price(repo) == before
    with pytest.raises(FutureEventTimeError, match=future.isoformat()[:16]):
        store.write_to_online_store("live_prices", push_frame(6.0, future))
    assert live_price(repo) == before
    store.close()
    yaml = repo / "feature_store.yaml"
    yaml.write_text(yaml.read_text() + "write_safety:\n  max_future_skew_seconds: 0\n")
    relaxed = store_as(repo, None)
    assert relaxed.write_to_online_store("live_prices", push_frame(6.0, future)) == 1
    relaxed.close()


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "ladle.audit"]


def test_writes_materializations_applies_and_denials_are_audited(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    bob = store_as(repo, BOB)
    root = store_as(repo, ROOT)
    with caplog.at_level(logging.INFO, logger="ladle.audit"):
        bob.push("price_push", push_frame(9.0))
        with pytest.raises(PermissionDeniedError):
            bob.write_to_online_store("commodity_price_features", push_frame(1.0).assign(price_change_24h=[0.0]))
        root.materialize_incremental(datetime.now(UTC), ["commodity_price_features"])
        root.apply([Entity(name="region", join_keys=["region_id"])])
        with pytest.raises(FutureEventTimeError):
            bob.push("price_push", push_frame(9.0, datetime.now(UTC) + timedelta(days=2)))
    lines = _audit_lines(caplog)
    assert [(line["event"], line["outcome"]) for line in lines] == [
        ("push", "allowed"),
        ("write_to_online_store", "denied"),
        ("materialize", "allowed"),
        ("apply", "allowed"),
        ("push", "failed"),
    ]
    push, denied, materialize, apply, failed = lines
    assert push["principal"] == "bob" and push["method"] == "api_key" and push["source"] == "sdk"
    assert push["actions"] == ["WRITE_ONLINE"] and push["resources"] == ["feature_view:live_prices"]
    assert push["rows"] == 1 and push["project"] == PROJECT
    assert denied["resources"] == ["feature_view:commodity_price_features"] and "bob may not" in denied["detail"]
    assert materialize["principal"] == "root" and isinstance(materialize["rows"], int)
    assert apply["resources"] == ["entity:region"] and apply["actions"] == ["CREATE"]
    assert "FutureEventTimeError" in failed["detail"]
    bob.close()
    root.close()


def test_a_changed_permission_takes_effect_with_the_next_registry_version(repo: Path) -> None:
    alice = store_as(repo, ALICE)
    refs = ["commodity_price_features:current_price"]
    assert alice.get_online_features(refs, CRUDE).to_dict()["current_price"] == [78.25]
    assert alice.get_online_features(tuple(refs), CRUDE).to_dict()["current_price"] == [78.25]  # the memoized grant
    root = store_as(repo, ROOT)
    narrower = Permission(
        "price_readers", types=[FeatureView], name_patterns=["commodity_price_features"],
        actions=[AuthzedAction.DESCRIBE], policy=RoleBasedPolicy(roles=["analyst"]),
    )  # fmt: skip
    root.apply([narrower])
    alice.refresh_registry()
    with pytest.raises(PermissionDeniedError, match="alice may not READ_ONLINE feature view 'commodity_price"):
        alice.get_online_features(refs, CRUDE)
    for store in (alice, root):
        store.close()


def test_the_sdk_caller_comes_from_its_credential_under_api_key_auth(repo: Path) -> None:
    config_file = repo / "feature_store.yaml"
    config = yaml.safe_load(config_file.read_text())
    keys = [
        {"name": "alice", "sha256": hash_key("alice-key"), "roles": ["analyst"]},
        {"name": "bob", "sha256": hash_key("bob-key"), "roles": ["writer"]},
    ]
    config["auth"] = {"type": "api_key", "keys": keys}
    config_file.write_text(yaml.safe_dump(config))
    alice = FeatureStore(repo_path=repo, credential="alice-key")
    bob = FeatureStore(repo_path=repo, credential="bob-key")
    try:
        assert alice.principal.name == "alice"
        read = alice.get_online_features(["commodity_price_features:current_price"], CRUDE).to_dict()
        assert read["current_price"][0] is not None
        with pytest.raises(
            PermissionDeniedError, match="bob may not READ_ONLINE feature view 'commodity_price_features'"
        ):
            bob.get_online_features(["commodity_price_features:current_price"], CRUDE)
        with pytest.raises(AuthenticationError):
            FeatureStore(repo_path=repo, credential="wrong-key").get_online_features(
                ["commodity_price_features:current_price"], CRUDE
            )
    finally:
        alice.close()
        bob.close()


def test_history_and_the_registry_dump_need_describe(repo: Path) -> None:
    alice, root = store_as(repo, ALICE), store_as(repo, ROOT)
    try:
        assert [v.version for v in alice.history("feature_view", "commodity_price_features")] == [1]
        with pytest.raises(PermissionDeniedError, match="alice may not DESCRIBE feature view 'station_features'"):
            alice.history("feature_view", "station_features")
        with pytest.raises(PermissionDeniedError, match="alice may not DESCRIBE"):
            alice.registry_dump()
        assert "station_features" in str(root.registry_dump())
    finally:
        alice.close()
        root.close()
