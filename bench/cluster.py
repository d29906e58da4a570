"""A local 3-master Redis Cluster for ``--backend redis_cluster`` (the one the tests start).

    with local_cluster() as nodes:      # "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
        ...

The launcher is the tests' :class:`LocalRedisCluster` (``tests/backends/redis_cluster.py``), so the
benchmarks and the conformance suite run on the very same topology: three masters on loopback, no
replicas, no persistence.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent / "tests"


@contextlib.contextmanager
def local_cluster(masters: int = 3) -> Iterator[str]:
    """Start a Redis Cluster of ``masters`` masters; yield its startup nodes; stop it afterwards."""
    if str(_TESTS) not in sys.path:
        sys.path.insert(0, str(_TESTS))
    from backends.redis_cluster import LocalRedisCluster  # type: ignore[import-not-found]  # tests/, on the path above

    cluster = LocalRedisCluster(Path(tempfile.mkdtemp(prefix="ladle-bench-cluster-")), masters=masters).start()
    try:
        yield cluster.connection_string
    finally:
        cluster.stop()
