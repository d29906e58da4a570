"""A PostgreSQL registry database that does not exist yet: created when the role may, else one line saying how."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.errors import RegistryError

pytestmark = pytest.mark.postgres


@pytest.fixture
def server(postgres_server: str) -> str:
    """``host:port`` of the test server."""
    url = sa.make_url(postgres_server)
    return f"{url.host}:{url.port}"


@pytest.fixture
def admin(postgres_server: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def missing_name(admin: sa.Engine) -> Iterator[str]:
    name = f"ladle_new_{uuid.uuid4().hex[:12]}"
    yield name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_missing_database_is_created(tmp_path: Path, admin: sa.Engine, server: str, missing_name: str) -> None:
    store = FeatureStore(
        repo_path=tmp_path,
        config={"project": "created", "registry": f"postgresql://postgres@{server}/{missing_name}"},
    )
    try:
        assert store.registry.snapshot(allow_cache=False).feature_views == {}
    finally:
        store.close()
    with admin.connect() as conn:
        found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": missing_name}).scalar()
    assert found == 1


def test_a_role_that_may_not_create_it_is_told_how(
    tmp_path: Path, admin: sa.Engine, server: str, missing_name: str
) -> None:
    role = f"ladle_nocreate_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN NOCREATEDB'))
    try:
        url = f"postgresql://{role}@{server}/{missing_name}"
        (tmp_path / "feature_store.yaml").write_text(f"project: p\nregistry: {url}\n")
        result = CliRunner().invoke(cli, ["-c", str(tmp_path), "feature-views", "list"])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert f"registry database PostgreSQL {role}@{server}/{missing_name} does not exist" in lines[0]
        host, port = server.split(":")
        assert f"create it with 'createdb -h {host} -p {port} -U {role} {missing_name}'" in lines[0]
        with pytest.raises(RegistryError, match="this role cannot create it"):
            FeatureStore(repo_path=tmp_path).registry.snapshot(allow_cache=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
