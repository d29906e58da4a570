"""The Ray engine (``batch_engine: ray``) against the local engine, on a local Ray cluster (2 CPUs).

Materialization and historical retrieval must give exactly what the local engine gives on the same
data; a worker killed mid-run is retried by Ray and the online rows and the watermark come out as
if nothing happened; the watermark is recorded once per view; a bad address is one ConfigError line.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, Int64, ValueType
from ladle.errors import ConfigError
from unit.test_stream_store import REPO as STREAM_REPO

pytestmark = pytest.mark.ray

try:
    import ray
except ImportError:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("Ray is not installed (the serve extra): the Ray engine tests cannot run", allow_module_level=True)

# recent, so the online reads' ttl (3 h from the last tick, at T0 + 11-12 h) still holds
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=13)
CODES = [f"C{i:03d}" for i in range(60)]
MARKETS = list(range(25))


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _data(root: Path) -> None:
    rng = random.Random(7)
    rows: dict[str, list[Any]] = {"code": [], "event_ts": [], "created": [], "price": [], "volume": []}
    for code in CODES:
        for h in range(12):
            for _ in range(rng.choice([1, 1, 2])):  # some (entity, time) pairs twice: created breaks the tie
                rows["code"].append(code)
                when = T0 + timedelta(hours=h, minutes=rng.randrange(60))
                rows["event_ts"].append(when)
                rows["created"].append(when + timedelta(seconds=rng.randrange(100)))
                rows["price"].append(rng.random())
                rows["volume"].append(rng.random() * 100)
    ticks = pa.table(rows).cast(
        pa.schema(
            [("code", pa.string()), ("event_ts", pa.timestamp("us", tz="UTC")),
             ("created", pa.timestamp("us", tz="UTC")), ("price", pa.float64()), ("volume", pa.float64())]
        )
    )  # fmt: skip
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(ticks, root / "data" / "ticks.parquet", row_group_size=200)
    markets: dict[str, list[Any]] = {"market_id": [], "event_ts": [], "depth": []}
    for m in MARKETS:
        for h in range(0, 12, 3):
            markets["market_id"].append(m)
            markets["event_ts"].append(T0 + timedelta(hours=h, minutes=rng.randrange(60)))
            markets["depth"].append(rng.randrange(1000))
    pq.write_table(
        pa.table(markets).cast(
            pa.schema([("market_id", pa.int32()), ("event_ts", pa.timestamp("us", tz="UTC")), ("depth", pa.int64())])
        ),
        root / "data" / "markets.parquet",
    )


def _definitions() -> list[Any]:
    code = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)
    market = Entity(name="market", join_keys=["market_id"], value_type=ValueType.INT64)
    ticks = FileSource(
        name="ticks", path="data/ticks.parquet", timestamp_field="event_ts", created_timestamp_column="created"
    )
    markets = FileSource(name="markets", path="data/markets.parquet", timestamp_field="event_ts")
    prices = FeatureView(
        name="prices", entities=[code], ttl=timedelta(hours=3),
        schema=[Field(name="price", dtype=Float64), Field(name="volume", dtype=Float64)], source=ticks,
    )  # fmt: skip
    depth = FeatureView(
        name="depth",
        entities=[market],
        ttl=timedelta(hours=24),
        schema=[Field(name="depth", dtype=Int64)],
        source=markets,
    )
    return [code, market, ticks, markets, prices, depth]


def _store(
    root: Path, name: str, engine: Any, offline: dict[str, Any] | None = None, load: bool = False
) -> FeatureStore:
    config = {
        "project": "rayt",
        "registry": {"path": str(root / f"{name}-registry.db"), "cache_ttl_seconds": 0},
        "online_store": {"type": "sqlite", "path": str(root / f"{name}-online.db")},
        "offline_store": offline or {"type": "duckdb"},
        "batch_engine": engine,
    }
    store = FeatureStore(config=config, repo_path=root)
    definitions = _definitions()
    if load:  # Iceberg: the tables are created by the first append, before apply reads them
        for source in definitions[2:4]:
            store.offline_store.append(source, pq.read_table(root / source.path))
    store.apply(definitions)
    return store


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[FeatureStore, FeatureStore]]:
    _data(tmp_path)
    local = _store(tmp_path, "local", "local")
    remote = _store(tmp_path, "ray", {"type": "ray", "partitions": 3, "max_retries": 2})
    try:
        yield local, remote
    finally:
        local.close()
        remote.close()


def _online(store: FeatureStore) -> dict[str, list[Any]]:
    rows = [{"code": c, "market_id": m} for c, m in zip(CODES, [*MARKETS, *MARKETS, *MARKETS], strict=False)]
    return store.get_online_features(["prices:price", "prices:volume", "depth:depth"], rows).to_dict()


def _entity_frame(n: int = 400) -> pa.Table:
    rng = random.Random(11)
    return pa.table(
        {
            "req": pa.array(range(n), pa.int64()),
            "code": [rng.choice([*CODES, "MISSING"]) for _ in range(n)],
            "market_id": pa.array([rng.choice(MARKETS) for _ in range(n)], pa.int64()),
            "event_timestamp": pa.array(
                [T0 + timedelta(minutes=rng.randrange(-30, 14 * 60)) for _ in range(n)], pa.timestamp("us", tz="UTC")
            ),
        }
    )


def test_materialize_equals_local_engine(stores: tuple[FeatureStore, FeatureStore]) -> None:
    local, remote = stores
    start, end = T0, T0 + timedelta(hours=13)
    want = local.materialize(start, end)
    got = remote.materialize(start, end)
    assert [(r.view, r.rows_read) for r in got] == [(r.view, r.rows_read) for r in want]
    assert _online(remote) == _online(local)
    assert any(v is not None for v in _online(remote)["price"])
    for view in ("prices", "depth"):
        assert remote.registry.watermark(view) == local.registry.watermark(view) == end


def test_watermark_recorded_once_per_view(stores: tuple[FeatureStore, FeatureStore]) -> None:
    _, remote = stores
    end = T0 + timedelta(hours=13)
    remote.materialize_incremental(end)
    runs = remote.registry.runs("prices")  # type: ignore[attr-defined]
    assert [(r.status, r.end) for r in runs] == [("succeeded", end)]
    materializer = remote._materializer()
    assert len(materializer.reports) == 0
    results = materializer.materialize(T0, end, ["prices"])
    assert len(materializer.reports) == 3  # three tasks ...
    assert sum(r.rows_read for r in materializer.reports) == results[0].rows_read == len(CODES)
    assert len(remote.registry.runs("prices")) == 2  # type: ignore[attr-defined]  # ... one run recorded


def test_killed_worker_is_retried_without_double_writes(
    stores: tuple[FeatureStore, FeatureStore], tmp_path: Path
) -> None:
    local, remote = stores
    start, end = T0, T0 + timedelta(hours=13)
    marker = tmp_path / "killed-once"

    def kill_first_attempt(part: Any, batch: int) -> None:  # runs in the Ray worker
        if part.lo == 0 and batch == 0 and not marker.exists():
            marker.touch()
            os._exit(1)  # the worker process dies mid-task, after writing its first batch

    materializer = dataclasses.replace(remote._materializer(), hook=kill_first_attempt, batch_rows=7)
    results = materializer.materialize(start, end, ["prices"])
    assert marker.exists(), "the task was never killed"
    local.materialize(start, end, ["prices"])
    assert _online(remote)["price"] == _online(local)["price"]
    assert _online(remote)["volume"] == _online(local)["volume"]
    assert results[0].rows_read == len(CODES)
    runs = remote.registry.runs("prices")  # type: ignore[attr-defined]
    assert [(r.status, r.end) for r in runs] == [("succeeded", end)]
    assert remote.registry.watermark("prices") == end


def test_historical_equals_local_engine_duckdb(stores: tuple[FeatureStore, FeatureStore]) -> None:
    local, remote = stores
    frame = _entity_frame()
    features = ["prices:price", "prices:volume", "depth:depth"]
    want = local.get_historical_features(frame, features).to_arrow()
    job = remote.get_historical_features(frame, features)
    got = job.to_arrow()
    assert got.equals(want)
    assert got.column("price").null_count < frame.num_rows  # some rows matched
    assert len(job.reports) == 3  # type: ignore[attr-defined]


def test_historical_equals_local_engine_iceberg(tmp_path: Path) -> None:
    pytest.importorskip("pyiceberg")
    _data(tmp_path)
    offline = {"type": "iceberg", "catalog": {"type": "sql", "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
                                               "warehouse": str(tmp_path / "warehouse")}}  # fmt: skip
    local = _store(tmp_path, "ilocal", "local", offline, load=True)
    remote = _store(tmp_path, "iray", {"type": "ray", "partitions": 2}, offline)
    try:
        frame = _entity_frame()
        features = ["prices:price", "prices:volume", "depth:depth"]
        want = local.get_historical_features(frame, features)
        job = remote.get_historical_features(frame, features)
        assert job.to_arrow().equals(want.to_arrow())
        assert dict(job.snapshots) == dict(want.snapshots)
    finally:
        local.close()
        remote.close()


def test_bad_address_is_one_config_error_line(tmp_path: Path) -> None:
    from ladle.config import load_config
    from ladle.materialize.ray_engine import RayEngine

    ray.shutdown()  # a connected driver would be reused; the module fixture's shutdown is then a no-op
    try:
        config = load_config(
            {"project": "p", "batch_engine": {"type": "ray", "address": "ray://127.0.0.1:9"}}, tmp_path
        )
        with pytest.raises(ConfigError) as info:
            RayEngine(config).connect()
        assert "\n" not in str(info.value)
        assert "ray://127.0.0.1:9" in str(info.value)
    finally:
        ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)


def test_stream_aggregation_backfill_equals_local_engine(tmp_path: Path) -> None:
    from ladle.repo import load_repo

    root = tmp_path / "repo"
    (root / "data" / "ticks").mkdir(parents=True)
    (root / "streams.py").write_text(STREAM_REPO)  # the stream views of the DuckDB store tests
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rng = random.Random(5)
    codes = [f"K{i}" for i in range(12)]
    n = 900
    events = pa.table(
        {
            "code": [rng.choice(codes) for _ in range(n)],
            "event_timestamp": pa.array(
                [now - timedelta(seconds=rng.randrange(5 * 3600)) for _ in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "price": [rng.uniform(50, 150) for _ in range(n)],
            "volume": pa.array([rng.randrange(1, 100) for _ in range(n)], pa.int64()),
        }
    )
    pq.write_table(events, root / "data" / "ticks" / "part-0.parquet")

    def make(name: str, engine: Any) -> FeatureStore:
        store = FeatureStore(
            config={
                "project": "streams",
                "registry": {"path": str(root / "data" / f"{name}.db"), "cache_mode": "sync"},
                "online_store": {"type": "sqlite", "path": str(root / "data" / f"{name}-online.db")},
                "offline_store": {"type": "duckdb"},
                "batch_engine": engine,
            },
            repo_path=root,
        )
        store.apply(load_repo(root), partial=False)
        return store

    local, remote = make("local", "local"), make("ray", {"type": "ray", "partitions": 3})
    try:
        start, end = now - timedelta(hours=6), now
        want = local.materialize(start, end)
        got = remote.materialize(start, end)
        assert [(r.view, r.rows_read) for r in got] == [(r.view, r.rows_read) for r in want]
        assert sum(r.rows_read for r in got) >= 2 * len(codes)
        features = ["price_stream:last_cents", "price_stream:high_1h", "price_stream:volume_30m", "hourly:mean_2h"]
        rows = [{"code": c} for c in codes]
        expected = local.get_online_features(features, rows).to_dict()
        got_rows = remote.get_online_features(features, rows).to_dict()
        # sums and means are computed per range: the same values up to floating-point summation order
        assert got_rows.keys() == expected.keys()
        for name, values in expected.items():
            assert got_rows[name] == pytest.approx(values, rel=1e-12, nan_ok=True), name
        assert any(v is not None for v in expected["high_1h"])
        frame = pa.table(
            {
                "code": [rng.choice(codes) for _ in range(200)],
                "event_timestamp": pa.array(
                    [now - timedelta(seconds=rng.randrange(5 * 3600)) for _ in range(200)], pa.timestamp("us", tz="UTC")
                ),
            }
        )
        ray_frame = remote.get_historical_features(frame, features).to_arrow().to_pydict()
        local_frame = local.get_historical_features(frame, features).to_arrow().to_pydict()
        for name, values in local_frame.items():
            assert ray_frame[name] == pytest.approx(values, rel=1e-12, nan_ok=True), name
    finally:
        local.close()
        remote.close()


def test_a_ray_materialization_is_a_lineage_run(tmp_path: Path) -> None:
    """The Ray engine goes through ``FeatureStore.materialize``: one OpenLineage run, engine 'ray' (docs/lineage.md)."""
    import json

    _data(tmp_path)
    lineage = {"transport": "file", "file": str(tmp_path / "lineage.jsonl")}
    _store(tmp_path, "ray", "local").close()  # writes the registry the Ray store below reads
    config = {
        "project": "rayt",
        "registry": {"path": str(tmp_path / "ray-registry.db"), "cache_ttl_seconds": 0},
        "online_store": {"type": "sqlite", "path": str(tmp_path / "ray-online.db")},
        "batch_engine": {"type": "ray", "partitions": 2},
        "lineage": lineage,
    }
    store = FeatureStore(config=config, repo_path=tmp_path)
    results = store.materialize(T0, T0 + timedelta(hours=12), ["prices"])
    assert store.lineage.flush()
    store.close()
    events = [json.loads(line) for line in (tmp_path / "lineage.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    facts = events[1]["run"]["facets"]["ladle"]["facts"]
    assert facts["engine"] == "ray"
    assert facts["rowsWritten"] == results[0].rows_written > 0


@pytest.mark.redis
def test_materialize_into_real_redis_equals_local_engine(tmp_path: Path, redis_address: str) -> None:
    """The workers write into the real Redis at 127.0.0.1:6379: the rows there are the local engine's."""
    import uuid

    import redis

    _data(tmp_path)
    project = f"ray{uuid.uuid4().hex[:10]}"
    local = _store(tmp_path, "rlocal", "local")
    remote = FeatureStore(
        config={
            "project": project,
            "registry": {"path": str(tmp_path / "rredis-registry.db"), "cache_ttl_seconds": 0},
            "online_store": {"type": "redis", "connection_string": redis_address},
            "offline_store": {"type": "duckdb"},
            "batch_engine": {"type": "ray", "partitions": 3, "max_retries": 2},
        },
        repo_path=tmp_path,
    )
    host, port = redis_address.split(":")
    raw = redis.Redis(host=host, port=int(port))
    try:
        remote.apply(_definitions())
        start, end = T0, T0 + timedelta(hours=13)
        want = local.materialize(start, end)
        got = remote.materialize(start, end)
        assert [(r.view, r.rows_read) for r in got] == [(r.view, r.rows_read) for r in want]
        # one key per (entity, view) in the project's keyspace, written by the workers
        row_keys = [k for k in raw.scan_iter(match=f"{{{project}:*", count=1000) if not k.endswith(b"_meta")]
        assert len(row_keys) == len(CODES) + len(MARKETS)
        assert raw.exists(f"{{{project}:{CODES[0]}}}:".encode() + _view_id("prices"))
        online = _online(remote)
        assert online == _online(local)
        assert sum(v is not None for v in online["price"]) > len(CODES) // 2
        assert remote.registry.watermark("prices") == end
    finally:
        remote.online_store.teardown(project, [])
        local.close()
        remote.close()


def _view_id(name: str) -> bytes:
    import hashlib

    return hashlib.blake2b(name.encode(), digest_size=6).hexdigest().encode()


def test_retrieval_task_scans_only_its_entity_hash_part(stores: tuple[FeatureStore, FeatureStore]) -> None:
    """A task's part filters the keyed view's source in its scan: the right part gives the local engine's
    answer; the same rows told they are another part (so the filter, if applied, drops their entities'
    source rows) find nothing in that view, and the other view (other keys) is not filtered."""
    import duckdb

    from ladle.definitions.refs import resolve
    from ladle.materialize.ray_retrieval import entity_part, part_ids
    from ladle.offline.hashing import ENTITY_PART, EntityPart, HashRange

    local, _ = stores
    features = ["prices:price", "prices:volume", "depth:depth"]
    k = 3
    frame = _entity_frame()
    # the parts computed independently: DuckDB's hash of the key as VARCHAR, modulo k
    expected = duckdb.sql(f"SELECT (hash(CAST(code AS VARCHAR)) % {k})::BIGINT AS p FROM frame").fetchnumpy()["p"]
    selections = resolve(local.snapshot(), features)
    assert list(part_ids(frame, selections, k)) == list(expected)
    assert entity_part(selections, k, 1) == EntityPart(("code",), ("VARCHAR",), HashRange(k, 1, 2))

    part = frame.filter(pa.array(expected == 1))
    want = local.get_historical_features(part, features).to_arrow()
    token = ENTITY_PART.set(entity_part(selections, k, 1))
    try:
        job = local.get_historical_features(part, features)
        assert f"% {k}) BETWEEN 1 AND 1" in job.sql
        assert job.to_arrow().equals(want)
        ENTITY_PART.set(EntityPart(("code",), ("VARCHAR",), HashRange(k, 2, 3)))  # a lie: these rows are part 1
        wrong = local.get_historical_features(part, features).to_arrow()
    finally:
        ENTITY_PART.reset(token)
    assert want.column("price").null_count < part.num_rows
    assert wrong.column("price").null_count == part.num_rows
    assert wrong.column("depth").equals(want.column("depth"))


def test_a_task_cut_again_in_bounded_memory_splits_its_own_part(
    stores: tuple[FeatureStore, FeatureStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a task (part 1 of hash % 3), the two-stage join's parts are buckets 1, 4, 7 of hash % 9: each
    holds some of the task's entities (hash % 3 alone would put them all in one), and the answer is the same."""
    import duckdb

    from ladle.definitions.refs import resolve
    from ladle.materialize.ray_retrieval import entity_part
    from ladle.offline.hashing import ENTITY_PART, HashRange
    from ladle.offline.partitioned import PartitionedRetrievalJob, sub_parts

    local, _ = stores
    features = ["prices:price", "prices:volume", "depth:depth"]
    frame = _entity_frame()
    buckets = duckdb.sql("SELECT (hash(CAST(code AS VARCHAR)) % 9)::BIGINT AS b FROM frame").fetchnumpy()["b"]
    part = frame.filter(pa.array(buckets % 3 == 1))
    want = local.get_historical_features(part, features).to_arrow()
    selections = resolve(local.snapshot(), features)
    monkeypatch.setenv("LADLE_RETRIEVAL_PARTS", "3")  # force the two-stage join, 3 parts per view
    token = ENTITY_PART.set(entity_part(selections, 3, 1))
    try:
        job = local.get_historical_features(part, features)
        assert isinstance(job, PartitionedRetrievalJob)
        prices_join = next(j for j in job._joins if j.view.name == "prices")
        depth_join = next(j for j in job._joins if j.view.name == "depth")
        assert sub_parts(prices_join, 3) == [HashRange(9, 1, 2), HashRange(9, 4, 5), HashRange(9, 7, 8)]
        assert sub_parts(depth_join, 3) == [HashRange(3, p, p + 1) for p in range(3)]  # other keys: not cut
        got = job.to_arrow()
    finally:
        ENTITY_PART.reset(token)
    assert {int(b) for b in buckets[buckets % 3 == 1]} == {1, 4, 7}  # every sub-part has entities
    assert got.equals(want)
