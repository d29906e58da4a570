"""The compatibility table (src/ladle/feast_compat) is complete, current, true and rendered in docs/feast-compat.md."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.errors import LadleError
from ladle.feast_compat import SECTIONS, claims, render, surface, surface_items
from ladle.feast_shim import feast_names
from ladle.server.rest import create_app

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _claimed(section: str, *statuses: str) -> list[str]:
    return sorted(i for i, c in claims()[section].items() if c.status in statuses)


@pytest.mark.feast_client
def test_the_stored_surface_is_what_feast_has_now(feast_introspection: dict[str, Any]) -> None:
    assert feast_introspection["surface"] == surface(), (
        "src/ladle/feast_compat/surface.json is stale: regenerate it with "
        "~/.cache/ladle/feast-venv-0.67.0/bin/python tests/feast_compat/extract_surface.py"
        " > src/ladle/feast_compat/surface.json"
    )


def test_every_item_has_one_claim_and_every_claim_an_item() -> None:
    items = surface_items()
    table = claims()
    for section in SECTIONS:
        assert sorted(table[section]) == items[section], f"status.toml [{section}] differs from surface.json"
        for claim in table[section].values():
            assert claim.status in ("supported", "partial", "no"), claim
            if claim.status != "supported":
                assert claim.note, f"{section} {claim.item}: a {claim.status} claim needs a note"


def test_the_docs_page_is_the_data() -> None:
    page = (ROOT / "docs" / "feast-compat.md").read_text()
    assert page == render(), "docs/feast-compat.md is stale: run .venv/bin/python -m ladle.feast_compat"


def _feast_name(name: str) -> tuple[bool, str]:
    """Whether ``from feast import name`` gives a usable Ladle object while a repo loads, and why not."""
    with feast_names():
        import feast

        try:
            value = getattr(feast, name)
        except LadleError as exc:
            return False, str(exc)
        doc = getattr(value, "__doc__", "") or ""
        if doc.startswith("Refused by Ladle"):
            return False, doc
        return True, ""


@pytest.mark.parametrize("name", _claimed("definitions", "supported", "partial", "no"))
def test_definition_claims_hold(name: str) -> None:
    usable, why = _feast_name(name)
    status = claims()["definitions"][name].status
    if status == "no":
        assert not usable, f"feast.{name} works in the shim: update status.toml"
        assert "Ladle does not support" in why or "Refused by Ladle" in why
    else:
        assert usable, f"feast.{name} is claimed {status} but the shim refuses it: {why}"


def _params(fn: Any) -> tuple[set[str], bool]:
    parameters = inspect.signature(fn).parameters
    return set(parameters), any(p.kind == p.VAR_KEYWORD for p in parameters.values())


@pytest.mark.parametrize("name", sorted(surface()["sdk_methods"]))
def test_sdk_claims_hold(name: str) -> None:
    claim = claims()["sdk_methods"][name]
    attr = inspect.getattr_static(FeatureStore, name, None)
    if claim.status == "no":
        assert attr is None, f"FeatureStore.{name} exists now: update status.toml"
        return
    assert attr is not None, f"FeatureStore.{name} is claimed {claim.status} but does not exist"
    if claim.status == "supported":
        feast_params = surface()["sdk_methods"][name]["params"]
        ours, var_kw = _params(getattr(FeatureStore, name))
        missing = [p for p in feast_params if p not in ours and not var_kw]
        assert not missing, f"FeatureStore.{name} does not accept Feast's {missing}"


def _command_paths(group: click.Group, prefix: str = "") -> Iterator[str]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            yield from _command_paths(command, path)
        else:
            yield path


def test_cli_claims_hold() -> None:
    ours = set(_command_paths(cli))
    for verb, claim in claims()["cli_verbs"].items():
        if claim.status == "no":
            assert verb not in ours, f"ladle {verb} exists now: update status.toml"
        else:
            assert verb in ours, f"ladle {verb} is claimed {claim.status} but does not exist"


def test_route_claims_hold(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text("project: routes\nregistry: data/registry.db\n")
    store = FeatureStore(repo_path=tmp_path)
    try:
        routes = create_app(store)._routes
    finally:
        store.close()
    for route, claim in claims()["server_routes"].items():
        method, path = route.split(" ", 1)
        answered = method in routes.get(path, {})
        if claim.status == "no":
            assert not answered, f"Ladle serves {route} now: update status.toml"
        else:
            assert answered, f"{route} is claimed {claim.status} but Ladle's REST server has no such route"
