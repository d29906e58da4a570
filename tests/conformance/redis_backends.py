"""Redis and Redis Cluster factories for the online conformance suite (see backends.py).

``make_redis`` uses the shared server (fixture ``redis_address``); ``make_redis_cluster`` the Redis
Cluster started for the session (fixture ``redis_cluster_nodes``, from ``tests/redis_cluster_plugin.py``).
Both return a fresh client on the same data each time they are called (also in forked children);
tests isolate themselves by project name and tear their project down.
"""

from __future__ import annotations

from ladle.config import RepoConfig
from ladle.online.base import OnlineStore
from ladle.online.redis.store import RedisOnlineStore, RedisOnlineStoreConfig

#: Conformance cases a Redis backend cannot pass (backend → test name → reason), run as strict xfails.
GAPS: dict[str, dict[str, str]] = {"redis": {}, "redis_cluster": {}}

#: Backends whose multi-entity write is atomic per row (each entity, with all its views, in one hash slot),
#: not per batch: a write of many entities is one script call per slot and a read one MGET per slot, so a
#: reader can see some slots before and some after a write (see docs/redis.md). Whether a given run sees
#: that is up to timing, so the suite checks what these backends do promise: every row is whole.
ROW_ATOMIC_ONLY = frozenset({"redis_cluster"})


def make_redis(redis_address: str) -> OnlineStore:
    """A store on the shared Redis server (``host:port``)."""
    config = RepoConfig(project="conformance", online_store=RedisOnlineStoreConfig(connection_string=redis_address))
    return RedisOnlineStore(config)


def make_redis_cluster(redis_cluster_nodes: str) -> OnlineStore:
    """A store on the session's Redis Cluster (``host:port,host:port,...`` startup nodes)."""
    config = RepoConfig(
        project="conformance",
        online_store=RedisOnlineStoreConfig(connection_string=redis_cluster_nodes, redis_type="redis_cluster"),
    )
    return RedisOnlineStore(config)
