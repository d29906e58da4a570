"""Routing a Redis Cluster read (``online/redis/cluster_read.py``): entities grouped by master.

The grouping must agree with Redis's own slot rule (redis-py's ``key_slot``) for every row key,
including entities whose ``}`` ends the hash tag early; the routing table must hold any number of
masters.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from redis.crc import key_slot

from ladle.online.redis.cluster_read import by_master, routing
from ladle.online.redis.keys import key_prefix, key_suffix

VID = b"0123456789ab"


def owner(slot: int, masters: int) -> int:
    """A synthetic slot map: slot s is served by master s % masters."""
    return slot % masters


def table(masters: int) -> bytes:
    return bytes(owner(slot, masters) for slot in range(16384)) * 4


@pytest.mark.parametrize(
    "entities",
    [
        [b"CMD%05d" % i for i in range(500)],  # fixed width: the usual case
        [b"x", b"long-entity-key-42", b"", b"CMD7"],  # mixed widths, an empty key
        [b"a}b", b"CMD1", b"}", b"{x}"],  # a '}' ends the hash tag early
    ],
)
def test_by_master_agrees_with_redis_slots(entities: list[bytes]) -> None:
    mine, positions = by_master("proj", entities, table(3), 3)
    assert sorted(p for ps in positions for p in ps) == list(range(len(entities)))
    for k in range(3):
        assert mine[k] == [entities[i] for i in positions[k]]
        assert positions[k] == sorted(positions[k])  # request order kept within a master
        for entity in mine[k]:
            key = key_prefix("proj") + entity + key_suffix(VID)
            assert owner(key_slot(key), 3) == k


def fake_cluster(masters: int) -> Any:
    """What ``routing`` reads of redis-py's cluster client: its slot map (no server involved)."""
    nodes = [SimpleNamespace(name=f"10.0.{m // 250}.{m % 250}:6379") for m in range(masters)]
    manager = SimpleNamespace(slots_cache=object(), get_node_from_slot=lambda slot: nodes[owner(slot, masters)])
    return SimpleNamespace(nodes_manager=manager)


@pytest.mark.parametrize("masters", [3, 300])
def test_routing_table_holds_any_number_of_masters(masters: int) -> None:
    cluster = fake_cluster(masters)
    nodes, by_crc = routing(cluster)
    assert len(nodes) == masters and len(by_crc) == 65536
    for crc in (0, 1, 16383, 16384, 40000, 65535):
        assert nodes[by_crc[crc]].name == cluster.nodes_manager.get_node_from_slot(crc % 16384).name
    assert routing(cluster)[1] is by_crc  # built once per slot map
