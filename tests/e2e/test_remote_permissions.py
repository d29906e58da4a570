"""Permissions through the remote stores: READ_ONLINE on an on-demand view and on its inputs, READ_OFFLINE
for training sets; a real ``ladle serve`` with API keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ladle import AuthzedAction, FeatureStore, FeatureView, OnDemandFeatureView, Permission, RoleBasedPolicy
from ladle.errors import PermissionDeniedError
from security.serve_process import Served, serve
from unit.odfv_repo import PROJECT, build_odfv_repo

KEY = "ladle_permission_test_key_fedcba9876543210"
ROWS = {"commodity_code": ["brent"], "quantity": [2.0]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("remote_permissions")
    store = build_odfv_repo(path)
    grant = Permission(
        name="reader_online", types=[FeatureView, OnDemandFeatureView], name_patterns=["^prices$", "^order_value$"],
        actions=[AuthzedAction.READ_ONLINE], policy=RoleBasedPolicy(roles=["reader"]),
    )  # fmt: skip
    store.apply([grant])
    store.close()
    config = yaml.safe_load((path / "feature_store.yaml").read_text())
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    config["auth"] = {"type": "api_key", "keys": [{"name": "model", "sha256": digest, "roles": ["reader"]}]}
    (path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    with serve(path) as running:
        yield running


@pytest.mark.slow  # starts its own ladle serve
def test_odfv_reads_need_read_online_on_the_odfv_and_training_sets_need_read_offline(
    served: Served, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{served.rest_port}"
    config = {
        "project": PROJECT,
        "registry": "data/registry.db",
        "online_store": {"type": "remote", "path": url},
        "offline_store": {"type": "remote", "path": url},
    }
    (tmp_path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    store = FeatureStore(repo_path=tmp_path, credential=KEY)
    try:
        got = store.get_online_features(["prices:current_price", "order_value:order_value"], ROWS).to_dict()
        assert got["order_value"] == [got["current_price"][0] * 2.0]
        with pytest.raises(PermissionDeniedError, match="big_order"):  # granted on its inputs, not on it
            store.get_online_features(["big_order:big_order"], ROWS)
        entity_df = pd.DataFrame(
            {"commodity_code": ["brent"], "event_timestamp": pd.to_datetime(["2024-01-06"], utc=True)}
        )
        with pytest.raises(PermissionDeniedError, match="READ_OFFLINE"):
            store.get_historical_features(entity_df, ["prices:current_price"]).to_df()
    finally:
        store.close()
