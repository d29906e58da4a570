"""Permission objects in the SQL registry, on SQLite and PostgreSQL: versioned like every other object."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ladle import READ, AuthzedAction, FeatureView, NamespaceBasedPolicy, Permission, RoleBasedPolicy
from ladle.config import RegistryConfig
from ladle.errors import PermissionNotFoundError
from ladle.registry.base import ObjectChange
from ladle.registry.sql import SqlRegistry

READERS = Permission(
    "readers",
    types=[FeatureView],
    name_patterns=["prices_.*"],
    actions=READ,
    policy=RoleBasedPolicy(roles=["analyst"]),
    required_tags={"team": "markets"},
)


BACKENDS = [pytest.param("sqlite", marks=pytest.mark.sqlite), pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def open_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], SqlRegistry]]:
    location = str(tmp_path / "registry.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened: list[SqlRegistry] = []

    def make() -> SqlRegistry:
        registry = SqlRegistry(RegistryConfig(path=location, cache_mode="sync"), "carbon", tmp_path)
        opened.append(registry)
        return registry

    yield make
    for registry in opened:
        registry.close()


def test_permissions_round_trip_with_versions(open_registry: Callable[[], SqlRegistry]) -> None:
    writer = open_registry()
    writer.apply_changes([ObjectChange("permission", "readers", READERS.to_spec())], expected_version=0)
    reader = open_registry()
    loaded = reader.snapshot(allow_cache=False).permission("readers")
    assert loaded == READERS and loaded.actions == frozenset(READ)
    assert loaded.matches("feature_view", "prices_daily", {"team": "markets"})
    wider = Permission(
        "readers", types=[FeatureView], actions=[*READ, AuthzedAction.DESCRIBE], policy=NamespaceBasedPolicy(["ml"])
    )
    writer.apply_changes([ObjectChange("permission", "readers", wider.to_spec())], expected_version=1)
    writer.apply_changes([ObjectChange("permission", "readers", None)], expected_version=2)
    history = reader.history("permission", "readers")
    assert [h.version for h in history] == [1, 2, 3]
    assert history[1].spec is not None and Permission.from_spec(history[1].spec) == wider
    assert history[2].spec is None
    with pytest.raises(PermissionNotFoundError, match="permission 'readers' does not exist in project 'carbon'"):
        reader.snapshot(allow_cache=False).permission("readers")
    assert reader.dump()["permissions"] == []


def test_an_older_registry_gains_the_permissions_table(open_registry: Callable[[], SqlRegistry]) -> None:
    old = open_registry()
    assert old.version() == 0  # creates the schema
    with old._db.write() as conn:
        conn.execute(sa.text("DROP TABLE permissions"))
    old.close()
    upgraded = open_registry()
    upgraded.apply_changes([ObjectChange("permission", "readers", READERS.to_spec())], expected_version=0)
    assert list(upgraded.snapshot(allow_cache=False).permissions) == ["readers"]
