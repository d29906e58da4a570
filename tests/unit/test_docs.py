"""Docs that cannot drift: the CLI reference is generated, every setting and registry table is documented."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from ladle.config import FeatureServerConfig, LineageConfig, MaterializationConfig, RegistryConfig, RepoConfig
from ladle.plugins import available, load_backend
from ladle.registry.schema import metadata

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def gen_cli_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date() -> None:
    expected = gen_cli_docs().render()
    actual = (DOCS / "cli.md").read_text()
    assert actual == expected, "docs/cli.md is out of date: run .venv/bin/python scripts/gen_cli_docs.py"


def test_every_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    paths = gen_cli_docs().command_paths()
    assert {"ladle apply", "ladle feature-views versions", "ladle init"} <= set(paths)
    missing = [p for p in paths if f"`{p}`" not in text]
    assert not missing, f"undocumented commands in docs/cli.md: {missing}"


def _backend_configs() -> list[type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {}
    for group in ("ladle.online_stores", "ladle.offline_stores"):
        for name in available(group):
            config_class = load_backend(group, name).config_class
            out[config_class.__name__] = config_class
    return list(out.values())


@pytest.mark.parametrize(
    "model",
    [RepoConfig, RegistryConfig, FeatureServerConfig, MaterializationConfig, LineageConfig, *_backend_configs()],
    ids=lambda m: m.__name__,
)
def test_every_config_key_is_documented(model: type[BaseModel]) -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [name for name in model.model_fields if f"`{name}`" not in text]
    assert not missing, f"{model.__name__} keys missing from docs/configuration.md: {missing}"


def test_every_registry_table_and_column_is_documented() -> None:
    text = (DOCS / "registry.md").read_text()
    for table in metadata.sorted_tables:
        assert f"`{table.name}`" in text, f"table {table.name} is not documented in docs/registry.md"
        for column in table.columns:
            assert re.search(rf"`{column.name}`", text), f"column {table.name}.{column.name} is not documented"
