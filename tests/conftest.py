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
#: Node-id prefixes (a directory, a file, or one test). Everything else runs in the first phase on two
#: xdist workers: the rest of tests/security/ (auth, permissions, TLS: correctness, no clocks) and of
#: tests/unit/h2grpc/ (framing, calls, flow control, limits: bytes and codes, not timings) included.
SERIAL_PREFIXES = (
    "tests/security/test_grpc_attacks.py",  # a victim's p99 and the worker's RSS under attack, fd limits
    "tests/security/test_rest_limits.py",  # timeouts at their values, a fast client's p99, fd limits
    "tests/streaming/",  # a Kafka-protocol broker (but see PARALLEL_PREFIXES)
    "tests/unit/h2grpc/test_abuse_limits.py",  # handshake, idle and stall timeouts asserted within bounds
    "tests/unit/h2grpc/test_graceful_stop.py",  # grace periods
    "tests/unit/h2grpc/test_streams.py",  # a reset timed against a handler's sleep
    "tests/e2e/test_serve_multiworker.py",
    "tests/e2e/test_demo_live.py",
    "tests/unit/test_live_feed.py::test_follow_keeps_feeding_until_ctrl_c",  # a process fed on the clock
    # the overview's load time against the UI's 300 ms budget: beside the other worker it missed (CI, stop 28)
    "tests/ui/test_browser.py::test_overview_matches_the_registry_and_loads_within_budget",
)

#: Exceptions under :data:`SERIAL_PREFIXES`: tests/streaming/ tests that start no broker and no stream
#: process and time nothing (the engine, decoding, the Iceberg sink, parity with the batch, the flusher's
#: bookkeeping, the publisher's series, the CLIs' refusals), so the cores are no concern of theirs.
PARALLEL_PREFIXES = (
    "tests/streaming/test_decode.py",
    "tests/streaming/test_engine.py",
    "tests/streaming/test_engine_kernels.py",
    "tests/streaming/test_engine_property.py",
    "tests/streaming/test_iceberg_sink.py",
    "tests/streaming/test_parity.py",
    "tests/streaming/test_repo_streams.py",
    "tests/streaming/test_source_engine.py",
    "tests/streaming/test_stream_cli.py",
    "tests/streaming/test_flusher.py::test_a_job_is_reaped_only_once_it_finished_and_hands_back_its_follow_up",
    "tests/streaming/test_flusher.py::test_a_failed_job_is_raised_where_it_is_reaped",
    "tests/streaming/test_publish.py::test_prices_continue_the_real_series_as_the_live_feed_does",
    "tests/streaming/test_publish.py::test_a_shut_market_holds_the_price_with_no_volume",
    "tests/streaming/test_publish.py::test_the_cli_reports_a_missing_broker_in_one_line",
)


#: Tests of :data:`SERIAL_PREFIXES` that run two at a time, in a phase of their own between the
#: parallel and the serial phases (scripts/test.sh): the broker tests of tests/streaming/. Each starts
#: its own broker and stream processes on free ports and asserts no latency; they mostly wait (for a
#: rebalance, a session timeout, a killed process's restart: ~0.4 of a core on average), so two at a
#: time halve their wall time, while the latency and attack tests still get the machine to themselves.
PAIRED_PREFIXES = ("tests/streaming/",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SERIAL_PREFIXES` (less :data:`PARALLEL_PREFIXES`) and every Ray test ``serial``.

    Those of them under :data:`PAIRED_PREFIXES` are marked ``paired`` instead.
    """
    for item in items:
        listed = item.nodeid.startswith(SERIAL_PREFIXES) and not item.nodeid.startswith(PARALLEL_PREFIXES)
        if listed and item.nodeid.startswith(PAIRED_PREFIXES) and item.get_closest_marker("ray") is None:
            item.add_marker(pytest.mark.paired)
        elif listed or item.get_closest_marker("ray") is not None:
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


def require_module(module: str, why: str) -> None:
    """Skip (loudly) or, under CI=true, fail when an optional package is not installed."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return
    reason = f"{module.upper()} MISSING: {why}"
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
