"""feature_store.yaml and its dict form: Feast's keys, ${ENV} expansion, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladle import FeatureStore
from ladle.config import RepoConfig, load_config, load_yaml
from ladle.errors import ConfigError


def test_the_documented_dict_example_works() -> None:
    store = FeatureStore(
        repo_path="feature_repo",
        config={
            "project": "carbon",
            "registry": "postgresql://postgres@127.0.0.1:5432/ladle",
            "online_store": {"type": "redis", "connection_string": "127.0.0.1:6379"},
        },
    )
    config = store.config
    assert store.project == "carbon"
    assert config.registry.url(config.repo_path) == "postgresql+psycopg://postgres@127.0.0.1:5432/ladle"
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "127.0.0.1:6379"
    assert config.offline_store.type == "duckdb"
    assert config.repo_path == Path("feature_repo").resolve()


def test_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text(
        "project: carbon\n"
        "provider: local\n"
        "registry:\n  registry_type: sql\n  path: data/registry.db\n  cache_ttl_seconds: 5\n  cache_mode: sync\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\n"
        "offline_store: file\n"
        "entity_key_serialization_version: 3\n"
    )
    config = FeatureStore(repo_path=tmp_path).config
    assert config.registry.cache_ttl_seconds == 5 and config.registry.cache_mode == "sync"
    assert config.registry.url(config.repo_path) == f"sqlite:///{tmp_path.resolve()}/data/registry.db"
    assert config.online_store.type == "sqlite" and config.offline_store.type in {"duckdb", "file"}


def test_fs_yaml_file_elsewhere(tmp_path: Path) -> None:
    other = tmp_path / "conf" / "prod.yaml"
    other.parent.mkdir()
    other.write_text("project: prod\n")
    store = FeatureStore(repo_path=tmp_path, fs_yaml_file=other)
    assert store.project == "prod" and store.repo_path == tmp_path.resolve()


def test_env_expansion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LADLE_TEST_PROJECT", "carbon")
    monkeypatch.setenv("LADLE_TEST_PG", "db.internal:5433")
    monkeypatch.delenv("LADLE_TEST_UNSET", raising=False)
    config = load_config(
        {
            "project": "${LADLE_TEST_PROJECT}",
            "registry": "postgresql://ladle@${LADLE_TEST_PG}/${LADLE_TEST_UNSET:-registry}",
        },
        tmp_path,
    )
    assert config.project == "carbon"
    assert config.registry.path == "postgresql://ladle@db.internal:5433/registry"
    with pytest.raises(ConfigError, match=r"registry\.path: environment variable LADLE_TEST_UNSET is not set"):
        load_config({"project": "carbon", "registry": {"path": "${LADLE_TEST_UNSET}"}}, tmp_path)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"projet": "carbon"}, r"project: required key is missing.*projet: unknown key \(check the spelling"),
        ({"project": "carbon", "registry": {"pathh": "x"}}, r"registry\.pathh: unknown key"),
        ({"project": "carbon", "online_store": {"type": "sqlite", "pth": "x"}}, r"online_store\.pth: unknown key"),
        ({"project": "carbon", "materialization": {"batch": 1}}, r"materialization\.batch: unknown key"),
    ],
    ids=["top-level", "registry", "online-store", "nested-block"],
)
def test_unknown_keys_are_reported_with_their_path(raw: dict[str, object], match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(raw, tmp_path)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"project": "carbon", "registry": {"cache_ttl_seconds": "soon"}}, r"registry\.cache_ttl_seconds: .*'soon'"),
        ({"project": "carbon", "registry": {"cache_ttl_seconds": -1}}, r"registry\.cache_ttl_seconds"),
        ({"project": "carbon", "registry": {"cache_mode": "eager"}}, r"registry\.cache_mode: .*'eager'"),
        ({"project": "bad name"}, r"project: .*letters, digits"),
        ({"project": "carbon", "entity_key_serialization_version": 2}, r"entity_key_serialization_version"),
        ({"project": "carbon", "provider": "azure"}, r"provider"),
        ({"project": "carbon", "online_store": {"type": "cassandra"}}, r"unknown online store type 'cassandra'"),
        ({"project": "carbon", "online_store": 5}, r"online_store: must be a type name or a mapping"),
        ({"project": "carbon", "feature_server": {"max_entities_per_request": 0}}, r"max_entities_per_request"),
    ],
    ids=[
        "ttl-type",
        "ttl-negative",
        "cache-mode",
        "project",
        "key-version",
        "provider",
        "store-type",
        "store-block",
        "server-limit",
    ],
)
def test_wrong_values_are_reported(raw: dict[str, object], match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(raw, tmp_path)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no feature_store\.yaml"):
        load_yaml(tmp_path / "feature_store.yaml")
    bad = tmp_path / "feature_store.yaml"
    bad.write_text("project: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(bad)


def test_defaults() -> None:
    config = load_config({"project": "carbon"})
    assert isinstance(config, RepoConfig)
    assert config.registry.path == "data/registry.db"
    assert config.online_store.type == "sqlite" and config.offline_store.type == "duckdb"
    assert config.entity_key_serialization_version == 3
