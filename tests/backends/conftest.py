"""Fixtures of the backend-specific tests: the shared Redis Cluster, real TLS Redis servers, per-test stores.

The TLS fixtures start their servers once per session (per xdist worker) on free loopback ports and
stop them at its end. Without ``redis-server`` / ``redis-cli``, or with a redis-server that cannot
serve TLS, they skip loudly, or fail under ``CI=true``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from backends.redis_cluster import LocalRedisCluster
from backends.redis_tls import TlsFiles, TlsRedisServer, TlsUnavailable, tls_binaries_available
from redis_cluster_plugin import redis_cluster_nodes

__all__ = [
    "misnamed_server",
    "redis_cluster_nodes",
    "redis_mtls_server",
    "redis_tls_cluster",
    "redis_tls_files",
    "redis_tls_server",
    "scratch",
    "tls_service",
]

_IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
T = TypeVar("T")


def _down(reason: str) -> NoReturn:
    reason = f"SERVICE DOWN: {reason}"
    if _IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and its certificates (:class:`backends.redis_tls.TlsFiles`), made once per session."""
    return TlsFiles.make(tmp_path_factory.mktemp("redis-pki"))


def scratch(prefix: str) -> Path:
    """A new temporary directory (made only once a server is really started: see :func:`tls_service`)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def tls_service(start: Callable[[], T]) -> T:
    """``start()``, turning a missing redis-server or one without TLS into a loud skip (a failure under CI)."""
    if not tls_binaries_available():
        _down("redis-server / redis-cli not on PATH; cannot start a TLS Redis")
    try:
        return start()
    except TlsUnavailable as exc:
        _down(f"this redis-server cannot serve TLS: {exc}")


@pytest.fixture(scope="session")
def redis_tls_server(redis_tls_files: TlsFiles) -> Iterator[TlsRedisServer]:
    """One TLS-only redis-server (client certificates not required) for the session."""
    server = tls_service(lambda: TlsRedisServer(scratch("ladle-redis-tls-"), redis_tls_files).start())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_tls_cluster(redis_tls_files: TlsFiles) -> Iterator[LocalRedisCluster]:
    """A TLS-only 3-master Redis Cluster (clients and bus) for the session."""
    cluster = tls_service(lambda: LocalRedisCluster(scratch("ladle-redis-tls-cluster-"), tls=redis_tls_files).start())
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_mtls_server(redis_tls_files: TlsFiles) -> Iterator[TlsRedisServer]:
    """A TLS-only redis-server that requires a client certificate from the test CA."""
    server = tls_service(
        lambda: TlsRedisServer(scratch("ladle-redis-mtls-"), redis_tls_files, auth_clients=True).start()
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def misnamed_server(redis_tls_files: TlsFiles) -> Iterator[TlsRedisServer]:
    """A TLS-only redis-server whose certificate (from the test CA) names only redis.invalid."""
    files = redis_tls_files
    misnamed = {"cert": files.misnamed_cert, "key": files.misnamed_key}
    server = tls_service(lambda: TlsRedisServer(scratch("ladle-redis-misnamed-"), files, **misnamed).start())
    yield server
    server.stop()
