"""The slot tables of :func:`ladle.online.redis.fanout.slot_table`: reused per slot map, and bounded.

A cluster client is replaced whenever the store rediscovers the topology (a timeout, a failover, a
restart) and whenever a store is opened; a long-running server sees many. The cache must not keep
a table, and through it the client's nodes and connection pools, for every client it ever saw.
"""

from __future__ import annotations

import gc
import uuid
import weakref
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from redis.cluster import ClusterNode, RedisCluster

from ladle.config import load_config
from ladle.definitions import Entity, FeatureView, Field, FileSource
from ladle.online.redis import fanout
from ladle.online.redis.store import RedisOnlineStore
from ladle.types import Float64, String

pytestmark = pytest.mark.redis_cluster

VIEW = FeatureView(
    name="prices",
    source=FileSource(path="ticks.parquet", timestamp_field="event_timestamp"),
    entities=[Entity(name="commodity", join_keys=["code"], value_type=String)],
    schema=[Field(name="price", dtype=Float64)],
)
#: More clients than any sane cache keeps: each test makes this many and drops them.
CLIENTS = 24


def client(nodes: str) -> Any:
    """A new cluster client with its own startup nodes (as the store builds one on each rediscovery)."""
    return RedisCluster(startup_nodes=[ClusterNode(h, int(p)) for h, p in (n.split(":") for n in nodes.split(","))])


def test_the_table_is_reused_until_the_slot_map_changes(redis_cluster_nodes: str) -> None:
    c = client(redis_cluster_nodes)
    try:
        table = fanout.slot_table(c)
        assert len(table) == 16384
        assert fanout.slot_table(c) is table  # same slot map: built once
        manager = c.nodes_manager
        assert all(table[s] is manager.get_node_from_slot(s) for s in range(0, 16384, 97))
        manager.initialize()  # what redis-py does after a MOVED: a new slot map
        rebuilt = fanout.slot_table(c)
        assert rebuilt is not table
        assert [n.name for n in rebuilt] == [n.name for n in table]  # the topology itself did not change
    finally:
        c.close()


def test_closed_clients_are_not_kept_alive_by_their_tables(redis_cluster_nodes: str) -> None:
    managers = []
    for _ in range(CLIENTS):
        c = client(redis_cluster_nodes)
        fanout.slot_table(c)
        managers.append(weakref.ref(c.nodes_manager))
        c.close()
        del c
    gc.collect()
    alive = sum(ref() is not None for ref in managers)
    assert alive < CLIENTS // 2, f"{alive} of {CLIENTS} closed cluster clients are still held"


def test_stores_opened_and_closed_leave_a_bounded_cache(redis_cluster_nodes: str) -> None:
    """Through the store's own write path: each open store is a new client, and its table goes in the cache."""
    project = f"t{uuid.uuid4().hex[:12]}"
    block = {"type": "redis", "connection_string": redis_cluster_nodes, "redis_type": "redis_cluster"}
    config = load_config({"project": "unused", "online_store": block})
    ts = pa.array([datetime(2024, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    before = len(fanout._TABLES)
    for i in range(CLIENTS):
        store = RedisOnlineStore(config)
        try:
            assert store.write(project, VIEW, pa.table({"code": [f"C{i}"], "event_timestamp": ts, "price": [1.0]})) == 1
        finally:
            if i == CLIENTS - 1:
                store.teardown(project, [])
            store.close()
    assert len(fanout._TABLES) < before + CLIENTS // 2
