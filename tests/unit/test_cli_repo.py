"""The repo lifecycle and object browsing through the CLI (click's CliRunner, real embedded stores)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ladle.cli.main import cli


def run(repo: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, ["-c", str(repo), *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    run(tmp_path, "init", "demo")
    return tmp_path / "demo"


def edit(repo: Path, old: str, new: str) -> None:
    path = repo / "example_repo.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_init_creates_a_runnable_repo(repo: Path) -> None:
    assert {p.name for p in repo.iterdir()} >= {"feature_store.yaml", "example_repo.py", ".gitignore", "data"}
    assert (repo / "data" / "commodity_prices.parquet").stat().st_size > 0
    assert "project: demo" in (repo / "feature_store.yaml").read_text()
    again = run(repo.parent, "init", "demo", code=1)
    assert "already exists" in one_error_line(again)


def test_init_minimal_and_project_name(tmp_path: Path) -> None:
    run(tmp_path, "init", "my-repo", "--minimal", "--project", "prices")
    assert sorted(p.name for p in (tmp_path / "my-repo").iterdir()) == ["feature_store.yaml"]
    assert "project: prices" in (tmp_path / "my-repo" / "feature_store.yaml").read_text()
    assert "is invalid" in one_error_line(run(tmp_path, "init", "x", "--project", "bad name", code=1))


def test_apply_then_list(repo: Path) -> None:
    planned = run(repo, "plan")
    assert "+ feature_view commodity_price_features" in planned.output
    assert "6 to add, 0 to change, 0 to remove" in planned.output
    applied = run(repo, "apply")
    assert "+ entity commodity" in applied.output and "registry version 0 → 1" in applied.output
    views = json.loads(run(repo, "feature-views", "list", "-o", "json").output)
    assert [v["name"] for v in views] == ["commodity_price_features", "commodity_price_fresh"]
    assert "commodity_price_features" in run(repo, "feature-views", "list").output
    assert "No changes" in run(repo, "plan").output
    assert "No changes" in run(repo, "apply").output


def test_change_and_removal_are_shown_and_versioned(repo: Path) -> None:
    run(repo, "apply")
    edit(repo, "ttl=timedelta(days=7)", "ttl=timedelta(days=14)")
    planned = run(repo, "plan").output
    assert "~ feature_view commodity_price_features: ttl_seconds 604800 → 1209600" in planned
    run(repo, "apply", "--applied-by", "ci-bot deploy #7")
    versions = json.loads(run(repo, "feature-views", "versions", "commodity_price_features", "-o", "json").output)
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["applied_by"] == "ci-bot deploy #7" and "ladle apply" in versions[0]["applied_by"]
    table = run(repo, "feature-views", "versions", "commodity_price_features").output
    assert "created" in table and "changed" in table
    # Remove the push-fed view (and nothing else uses it).
    text = (repo / "example_repo.py").read_text()
    start = text.index("commodity_price_fresh = FeatureView(")
    end = text.index("price_model_v1 = ")
    (repo / "example_repo.py").write_text(text[:start] + text[end:])
    planned = run(repo, "plan").output
    assert "- feature_view commodity_price_fresh" in planned
    run(repo, "apply")
    names = [v["name"] for v in json.loads(run(repo, "feature-views", "list", "-o", "json").output)]
    assert names == ["commodity_price_features"]
    deleted = run(repo, "feature-views", "versions", "commodity_price_fresh").output
    assert "deleted" in deleted


def test_plan_json(repo: Path) -> None:
    data = json.loads(run(repo, "plan", "--output", "json").output)
    assert data["applied"] is False and data["version"] == 0
    assert {(d["kind"], d["action"]) for d in data["diffs"]} >= {("entity", "add"), ("feature_service", "add")}


def test_object_commands(repo: Path) -> None:
    run(repo, "apply")
    entities = json.loads(run(repo, "entities", "list", "-o", "json").output)
    assert [e["join_key"] for e in entities] == ["commodity_code"]
    described = json.loads(run(repo, "entities", "describe", "commodity", "-o", "json").output)
    assert described["spec"]["value_type"] == "STRING" and described["meta"]["version"] == 1
    view = json.loads(run(repo, "feature-views", "describe", "commodity_price_features", "-o", "json").output)
    assert view["spec"]["ttl_seconds"] == 604800 and view["meta"]["materialized_until"] is None
    assert "ttl_seconds: 604800" in run(repo, "feature-views", "describe", "commodity_price_features").output
    services = json.loads(run(repo, "feature-services", "list", "-o", "json").output)
    assert [s["name"] for s in services] == ["price_model_v1"]
    assert "price_model_v1" in run(repo, "feature-services", "describe", "price_model_v1").output
    sources = json.loads(run(repo, "data-sources", "list", "-o", "json").output)
    assert {s["name"]: s["type"] for s in sources} == {
        "commodity_prices_push": "push",
        "commodity_prices_source": "file",
    }
    assert "data/commodity_prices.parquet" in run(repo, "data-sources", "describe", "commodity_prices_source").output
    assert "push" in run(repo, "data-sources", "list").output


def test_tags_filter(repo: Path) -> None:
    run(repo, "apply")
    tagged = json.loads(run(repo, "feature-views", "list", "--tags", "team:commodities", "-o", "json").output)
    assert len(tagged) == 2
    assert json.loads(run(repo, "feature-views", "list", "--tags", "team:weather", "-o", "json").output) == []
    both = ["--tags", "team:commodities", "--tags", "tier:gold"]
    assert json.loads(run(repo, "feature-views", "list", *both, "-o", "json").output) == []
    assert "no entities" in run(repo, "entities", "list", "--tags", "team:x").output
    bad = run(repo, "entities", "list", "--tags", "nocolon", code=2)
    assert "key:value" in bad.output


def test_user_errors_are_one_line(repo: Path, tmp_path: Path) -> None:
    run(repo, "apply")
    missing = one_error_line(run(repo, "feature-views", "describe", "nope", code=1))
    assert missing.startswith("Error: FeatureViewNotFoundError: feature view 'nope' does not exist")
    assert "does not exist" in one_error_line(run(repo, "feature-views", "versions", "nope", code=1))
    assert "ConfigError" in one_error_line(run(tmp_path / "empty", "plan", code=1))
    edit(repo, "price_model_v1 = FeatureService(", "oops = 1 / 0\nprice_model_v1 = FeatureService(")
    broken = one_error_line(run(repo, "apply", code=1))
    assert re.search(r"RepoError: cannot load feature repo: example_repo\.py:\d+: ZeroDivisionError", broken)


def test_invalid_repo_changes_nothing(repo: Path) -> None:
    run(repo, "apply")
    edit(repo, 'Field(name="volume", dtype=Int64', 'Field(name="open_interest", dtype=Int64')
    error = one_error_line(run(repo, "apply", code=1))
    assert "DataSourceError" in error and "'open_interest'" in error
    dump = json.loads(run(repo, "registry-dump").output)
    assert dump["version"] == 1


def test_skip_source_validation(repo: Path) -> None:
    (repo / "data" / "commodity_prices.parquet").unlink()
    assert "DataSourceError" in one_error_line(run(repo, "plan", code=1))
    assert "6 to add" in run(repo, "plan", "--skip-source-validation").output


def test_registry_dump_and_teardown(repo: Path) -> None:
    run(repo, "apply")
    dump = json.loads(run(repo, "registry-dump").output)
    assert dump["project"] == "demo" and dump["version"] == 1
    assert [v["name"] for v in dump["feature_views"]] == ["commodity_price_features", "commodity_price_fresh"]
    assert dump["feature_views"][0]["spec"]["name"] == "commodity_price_features"
    assert dump["watermarks"] == {}
    assert "Tore down project 'demo'" in run(repo, "teardown").output
    assert json.loads(run(repo, "feature-views", "list", "-o", "json").output) == []
    assert json.loads(run(repo, "registry-dump").output)["entities"] == []


def test_configuration_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text(
        "project: carbon\n"
        "registry: postgresql://ladle:s3cret@db:5432/registry\n"
        "online_store:\n  type: redis\n  connection_string: 'cache:6379,password=hunter2,ssl=true'\n"
    )
    output = run(tmp_path, "configuration").output
    assert "s3cret" not in output and "hunter2" not in output
    assert "postgresql://ladle:***@db:5432/registry" in output and "password=***" in output
    assert "type: redis" in output and "cache_ttl_seconds" in output
