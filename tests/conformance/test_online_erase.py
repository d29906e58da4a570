"""Online erasure conformance (``EntityEraser``): the same cases on every backend (sqlite, redis, redis_cluster).

An entity's rows go, by full key or by part of a compound key; a dry run only counts; other entities,
other views and other projects keep theirs. Expected counts come from the rows the test wrote.
"""

from __future__ import annotations

import uuid

import pyarrow as pa

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.online.base import EntityEraser, OnlineStore, ReadRequest

T0 = 1_704_067_200_000_000
TS = pa.timestamp("us", tz="UTC")
commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
venue = Entity(name="venue", join_keys=["venue_id"], value_type=ValueType.INT64)
source = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
CODES = ["brent", "gold", "wti:1", "{x}"]  # ':' and braces must not confuse key parsing
VENUES = [1, 22, 333]


def _view(name: str, entities: list[Entity]) -> FeatureView:
    return FeatureView(name=name, entities=entities, schema=[Field(name="price", dtype=Float64)], source=source)


def _rows(keys: dict[str, list[object]]) -> pa.Table:
    n = len(next(iter(keys.values())))
    return pa.table({**keys, "price": [float(i) for i in range(n)], "event_timestamp": pa.array([T0] * n, TS)})


def _present(store: OnlineStore, project: str, view: FeatureView, keys: dict[str, list[object]]) -> list[bool]:
    [rows] = store.read(project, [ReadRequest(view, ["price"], keys)])
    return [t is not None for t in rows.event_ts]


def test_erase_by_full_and_partial_key_leaves_everything_else(online_store: OnlineStore, project: str) -> None:
    assert isinstance(online_store, EntityEraser)
    single, pair = _view("prices", [commodity]), _view("venue_prices", [commodity, venue])
    online_store.update(project, [single, pair], [])
    online_store.write(project, single, _rows({"commodity_code": CODES}))
    pairs = [(c, v) for c in CODES for v in VENUES]
    online_store.write(
        project, pair, _rows({"commodity_code": [c for c, _ in pairs], "venue_id": [v for _, v in pairs]})
    )
    other = f"{project}_x"
    online_store.update(other, [single], [])
    online_store.write(other, single, _rows({"commodity_code": CODES}))
    try:
        assert online_store.erase_entity(project, pair, {"commodity_code": "wti:1"}, dry_run=True) == len(VENUES)
        assert online_store.erase_entity(project, pair, {"commodity_code": "wti:1"}) == len(VENUES)
        assert online_store.erase_entity(project, single, {"commodity_code": "wti:1"}) == 1
        assert online_store.erase_entity(project, pair, {"commodity_code": "{x}", "venue_id": 22}) == 1
        assert online_store.erase_entity(project, single, {"commodity_code": "nothing_" + uuid.uuid4().hex}) == 0
        assert _present(online_store, project, single, {"commodity_code": CODES}) == [True, True, False, True]
        found = _present(
            online_store, project, pair, {"commodity_code": [c for c, _ in pairs], "venue_id": [v for _, v in pairs]}
        )
        expected = [not (c == "wti:1" or (c == "{x}" and v == 22)) for c, v in pairs]
        assert found == expected
        assert _present(online_store, other, single, {"commodity_code": CODES}) == [True] * len(CODES)
    finally:
        online_store.teardown(other, [single])
