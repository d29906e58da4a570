"""Permissions through the CLI: plan/apply of Permission objects, the permissions verbs, denials as one line.

The CLI acts as the SDK's principal: denials are exercised with ``auth: {type: api_key}`` configured
and the caller's key in ``LADLE_AUTH_TOKEN``, as a user would run it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.security.api_keys import hash_key

PERMISSIONS_PY = """
from ladle import ALL_ACTIONS, READ, AuthzedAction, FeatureView, Permission, RoleBasedPolicy

price_readers = Permission(
    name="price_readers",
    types=[FeatureView],
    name_patterns=["commodity_price_.*"],
    actions=[*READ, AuthzedAction.DESCRIBE],
    policy=RoleBasedPolicy(roles=["analyst"]),
)
admins = Permission(name="admins", actions=ALL_ACTIONS, policy=RoleBasedPolicy(roles=["admin"]))
"""


def run(repo: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, ["-c", str(repo), *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    run(tmp_path, "init", "demo")
    repo = tmp_path / "demo"
    (repo / "permissions.py").write_text(PERMISSIONS_PY)
    return repo


def test_plan_and_apply_show_permissions_and_warn_under_no_auth(repo: Path) -> None:
    planned = run(repo, "plan")
    assert "+ permission admins" in planned.output and "+ permission price_readers" in planned.output
    assert "auth is no_auth: nothing is enforced" in planned.output
    run(repo, "apply")
    path = repo / "permissions.py"
    path.write_text(path.read_text().replace('roles=["analyst"]', 'roles=["analyst", "quant"]'))
    changed = run(repo, "plan").output
    assert "~ permission price_readers: policy.roles" in changed
    run(repo, "apply")
    versions = FeatureStore(repo_path=repo).registry.history("permission", "price_readers")
    assert [v.version for v in versions] == [1, 2]
    path.unlink()
    assert "- permission price_readers" in run(repo, "apply").output
    assert json.loads(run(repo, "permissions", "list", "-o", "json").output) == []


def test_permissions_list_describe_check(repo: Path) -> None:
    run(repo, "apply")
    listed = json.loads(run(repo, "permissions", "list", "-o", "json").output)
    assert [p["name"] for p in listed] == ["admins", "price_readers"]
    described = json.loads(run(repo, "permissions", "describe", "price_readers", "-o", "json").output)
    assert described["spec"]["policy"] == {"type": "role_based", "roles": ["analyst"]}
    assert described["meta"]["version"] == 1
    missing = run(repo, "permissions", "describe", "nope", code=1)
    assert "permission 'nope' does not exist" in missing.output
    check = ["permissions", "check", "--type", "feature_view", "--name", "commodity_price_features"]
    allowed = run(repo, *check, "--action", "READ_ONLINE", "--role", "analyst", "-o", "json")
    assert json.loads(allowed.output.split("\n", 1)[1])[0]["decision"] == "allowed"
    denied = run(repo, *check, "--action", "WRITE_ONLINE", "--role", "analyst", "-o", "json", code=1)
    row = json.loads(denied.output.split("\n", 1)[1])[0]
    assert row["decision"] == "denied"
    assert row["reason"] == "permission 'admins' matches but its policy does not accept (given)"
    table = run(repo, "permissions", "check", "--role", "admin", "--denied-only").output
    assert "no rows" in table or "denied" not in table


def test_a_denied_cli_command_is_one_line_and_changes_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(repo, "apply")
    store = FeatureStore(repo_path=repo)
    version = store.registry.version()
    store.close()
    config_file = repo / "feature_store.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["auth"] = {
        "type": "api_key",
        "keys": [{"name": "carol", "sha256": hash_key("carol-key"), "roles": ["analyst"]}],
    }
    config_file.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("LADLE_AUTH_TOKEN", "carol-key")
    result = run(repo, "materialize-incremental", "2024-06-01T00:00:00", code=1)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: PermissionDeniedError: carol may not WRITE_ONLINE feature view")
    path = repo / "example_repo.py"
    path.write_text(path.read_text().replace('description="Closing price in USD."', 'description="USD."'))
    denied = run(repo, "apply", code=1)
    assert "carol may not UPDATE feature view 'commodity_price_features'" in denied.output
    store = FeatureStore(repo_path=repo)
    assert store.registry.version() == version
    store.close()
    views = json.loads(run(repo, "feature-views", "list", "-o", "json").output)
    # The listing shows only what carol may DESCRIBE (the views price_readers matches).
    assert sorted(v["name"] for v in views) == ["commodity_price_features", "commodity_price_fresh"]
    refused = run(repo, "entities", "describe", "commodity", code=1)
    assert "carol may not DESCRIBE entity 'commodity'" in refused.output
    dump = run(repo, "registry-dump", code=1)  # a dump shows every object: DESCRIBE on all of them
    assert "carol may not DESCRIBE" in dump.output
    versions = run(repo, "feature-views", "versions", "commodity_price_features", "-o", "json")
    assert [v["version"] for v in json.loads(versions.output)] == [1]
