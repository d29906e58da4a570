"""Feast's verbs that Ladle adds: ``delete``, ``projects``, ``on-demand-feature-views``, ``saved-datasets``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ladle import FeatureStore
from ladle.cli.main import cli
from unit.server_repo import PROJECT, build_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    build_repo(tmp_path / "repo").store.close()
    return tmp_path / "repo"


def run(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-c", str(repo), *args])


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_delete_removes_one_object_through_apply(repo: Path) -> None:
    dry = run(repo, "delete", "price_model", "--dry-run")
    assert dry.exit_code == 0 and "would delete feature service 'price_model'" in dry.output
    assert "price_model" in [s.name for s in FeatureStore(repo_path=repo).list_feature_services()]
    done = run(repo, "delete", "price_model")
    assert done.exit_code == 0, done.output
    store = FeatureStore(repo_path=repo)
    try:
        assert "price_model" not in [s.name for s in store.list_feature_services()]
        assert store.history("feature_service", "price_model")[-1].spec is None  # recorded as a removal
    finally:
        store.close()


def test_delete_refuses_what_would_break_the_registry_and_unknown_names(repo: Path) -> None:
    line = _one_error_line(run(repo, "delete", "commodity_price_features"))
    assert "price_model" in line and "commodity_price_features" in line  # the service still reads it
    assert "commodity_price_features" in [v.name for v in FeatureStore(repo_path=repo).list_feature_views()]
    assert "does not exist" in _one_error_line(run(repo, "delete", "no_such_thing"))


def test_projects_list_current_and_describe(repo: Path) -> None:
    listed = run(repo, "projects", "list", "-o", "json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == [{"name": PROJECT, "current": True}]
    current = run(repo, "projects", "current_project")
    assert current.output.strip() == PROJECT
    described = run(repo, "projects", "describe", PROJECT)
    assert described.exit_code == 0 and "feature_view: 3" in described.output
    assert "not this repo's project" in _one_error_line(run(repo, "projects", "describe", "other"))


@pytest.mark.parametrize("group", ["on-demand-feature-views", "saved-datasets"])
def test_browsing_kinds_the_registry_has_none_of(repo: Path, group: str) -> None:
    listed = run(repo, group, "list", "-o", "json")
    assert listed.exit_code == 0 and json.loads(listed.output) == []
    assert "does not exist" in _one_error_line(run(repo, group, "describe", "x"))
