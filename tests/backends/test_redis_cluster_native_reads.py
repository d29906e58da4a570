"""Redis Cluster reads with and without the C accelerator, on the session's real 3-master cluster.

The same store reads the same request twice, once planned in C (``_cluster_plan``) and once in
Python; both must return the values written, nils for entities never written, duplicates and two
views of one request included.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pyarrow as pa
import pytest

from backends.test_redis_cluster_reads import CODES, T0, VIEW, open_store
from ladle.definitions import FeatureView, Field
from ladle.online.base import ReadRequest
from ladle.online.redis import cluster_read
from ladle.online.redis.store import RedisOnlineStore
from ladle.types import Float64

pytestmark = pytest.mark.redis_cluster

# a second view of the same entity: a request of both is two groups sharing one entity list
VOLUME = FeatureView(
    name="volumes", source=VIEW.source, entities=VIEW.entities, schema=[Field(name="volume", dtype=Float64)]
)


@pytest.fixture
def store(redis_cluster_nodes: str) -> Iterator[tuple[RedisOnlineStore, str]]:
    project = f"n{uuid.uuid4().hex[:12]}"
    s = open_store(redis_cluster_nodes)
    stamps = pa.array([T0 + timedelta(hours=1)] * len(CODES), pa.timestamp("us", tz="UTC"))
    s.write(
        project,
        VIEW,
        pa.table({"code": CODES, "event_timestamp": stamps, "price": [float(i) for i in range(len(CODES))]}),
    )
    s.write(
        project,
        VOLUME,
        pa.table({"code": CODES, "event_timestamp": stamps, "volume": [i * 10.0 for i in range(len(CODES))]}),
    )
    yield s, project
    s.teardown(project, [])
    s.close()


def read_both(s: RedisOnlineStore, project: str, codes: list[str]) -> tuple[list[object], list[object]]:
    results = s.read(
        project, [ReadRequest(VIEW, ["price"], {"code": codes}), ReadRequest(VOLUME, ["volume"], {"code": codes})]
    )
    return results[0].values["price"], results[1].values["volume"]


def test_c_and_python_plans_read_the_same_values(
    store: tuple[RedisOnlineStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if cluster_read._native is None:
        pytest.skip("C ACCELERATOR NOT BUILT: both runs would take the Python path")
    s, project = store
    codes = [*CODES[::37], "NEVER-WRITTEN", CODES[5], CODES[5], *CODES[1::101]]
    price = [None if c == "NEVER-WRITTEN" else float(CODES.index(c)) for c in codes]
    volume = [None if p is None else p * 10 for p in price]
    calls: list[str] = []
    real_plan = cluster_read._native.plan

    def counting(*args: object) -> object:
        calls.append("c")
        return real_plan(*args)

    monkeypatch.setattr(cluster_read._native, "plan", counting)
    assert read_both(s, project, codes) == (price, volume)
    assert calls, "the C plan was not used"
    monkeypatch.setattr(cluster_read, "_native", None)
    assert read_both(s, project, codes) == (price, volume)
    assert len(calls) == 1
