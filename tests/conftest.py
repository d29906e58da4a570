"""Shared fixtures: real services (Redis, PostgreSQL), skipped loudly outside CI, failing under CI=true."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

# The session fixture that starts a real 3-master Redis Cluster (for the conformance suite).
pytest_plugins = ["redis_cluster_plugin"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REDIS_HOST, REDIS_PORT = "127.0.0.1", int(os.environ.get("LADLE_TEST_REDIS_PORT", "6379"))
PG_HOST, PG_PORT = "127.0.0.1", int(os.environ.get("LADLE_TEST_PG_PORT", "5432"))


#: Tests that run in the suite's second phase, one at a time (scripts/test.sh): they assert latencies,
#: timeouts or fd limits, or run brokers and Ray clusters that want the machine's cores to themselves.
#: Everything else runs in the first phase on two xdist workers.
SERIAL_PREFIXES = (
    "tests/security/",
    "tests/streaming/",
    "tests/unit/h2grpc/",
    "tests/e2e/test_serve_multiworker.py",
    "tests/e2e/test_demo_live.py",
    "tests/unit/test_live_feed.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SERIAL_PREFIXES` and every Ray test ``serial``."""
    for item in items:
        if item.nodeid.startswith(SERIAL_PREFIXES) or item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.serial)


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP server accepts connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (loudly) or, under CI=true, fail when a service is not reachable."""
    if reachable(host, port):
        return
    reason = f"SERVICE DOWN: {name} at {host}:{port} is not reachable; start it (see .ci/run)"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_address() -> str:
    """``host:port`` of the real Redis server."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"{REDIS_HOST}:{REDIS_PORT}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A SQLAlchemy URL of the server's ``postgres`` database (for admin statements)."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    return f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres"


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"ladle_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
