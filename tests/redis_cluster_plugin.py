"""Pytest fixture ``redis_cluster_nodes``: one real 3-master Redis Cluster per test session.

Use it from any conftest by importing the fixture (``tests/`` is on ``sys.path`` because
``tests/conftest.py`` sits in a directory without ``__init__.py``)::

    from redis_cluster_plugin import redis_cluster_nodes  # noqa: F401

Every conftest that imports it shares the same cluster (started on first use, stopped when the
last user's session ends). Without ``redis-server`` / ``redis-cli`` the fixture skips loudly, or
fails under ``CI=true``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.redis_cluster import LocalRedisCluster, binaries_available

_IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_shared: dict[str, object] = {"cluster": None, "users": 0}


@pytest.fixture(scope="session")
def redis_cluster_nodes() -> Iterator[str]:
    """``host:port,host:port,host:port`` of a running Redis Cluster (3 masters, 0 replicas)."""
    if not binaries_available():
        reason = "SERVICE DOWN: redis-server / redis-cli not on PATH; cannot start a Redis Cluster"
        if _IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = _shared["cluster"]
    if cluster is None:
        workdir = Path(tempfile.mkdtemp(prefix="ladle-redis-cluster-"))
        cluster = _shared["cluster"] = LocalRedisCluster(workdir).start()
    assert isinstance(cluster, LocalRedisCluster)
    _shared["users"] = int(_shared["users"]) + 1  # type: ignore[call-overload]
    try:
        yield cluster.connection_string
    finally:
        _shared["users"] = int(_shared["users"]) - 1  # type: ignore[call-overload]
        if _shared["users"] == 0:
            cluster.stop()
            _shared["cluster"] = None
