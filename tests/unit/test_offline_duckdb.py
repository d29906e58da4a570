"""The DuckDB offline store: config, source resolution, pull_latest / pull_all, append."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import Entity, FeatureView, Field, FileSource, Float64, Int64, PushSource, ValueType
from ladle.config import RepoConfig, StrictModel
from ladle.errors import ConfigError, DataSourceError, SchemaMismatchError
from ladle.offline.base import OfflineStore
from ladle.offline.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from ladle.plugins import load_backend
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")

commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)
market = Entity(name="market", join_keys=["market_id"], value_type=ValueType.INT64)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ticks(codes: list[str], minutes: list[float], created: list[float | None], prices: list[float]) -> pa.Table:
    return pa.table(
        {
            "code": codes,
            "ts": pa.array([at(m) for m in minutes], TS),
            "created": pa.array([at(c) if c is not None else None for c in created], TS),
            "price": prices,
        }
    )


def view_on(path: str, **source_kw: object) -> FeatureView:
    source = FileSource(path=path, timestamp_field="ts", created_timestamp_column="created", **source_kw)  # type: ignore[arg-type]
    return FeatureView(name="prices", entities=[commodity], schema=[Field(name="price", dtype=Float64)], source=source)


@pytest.fixture
def store(tmp_path: Path) -> DuckDBOfflineStore:
    return DuckDBOfflineStore(RepoConfig(project="t", offline_store=DuckDBOfflineStoreConfig(), repo_path=tmp_path))


def collect(batches: object) -> pa.Table:
    got = list(batches)  # type: ignore[call-overload]
    return pa.Table.from_batches(got) if got else pa.table({})


# -- config and discovery ---------------------------------------------------------------------


def test_both_type_names_select_the_store() -> None:
    for name in ("duckdb", "file"):
        assert load_backend("ladle.offline_stores", name) is DuckDBOfflineStore
    assert issubclass(DuckDBOfflineStore.config_class, StrictModel)
    assert DuckDBOfflineStoreConfig.model_validate({"type": "file", "threads": 2}).threads == 2


def test_config_knobs_are_validated_and_applied(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        DuckDBOfflineStoreConfig.model_validate({"type": "duckdb", "threads": 0})
    with pytest.raises(ValidationError):
        DuckDBOfflineStoreConfig.model_validate({"type": "duckdb", "treads": 2})
    cfg = DuckDBOfflineStoreConfig(threads=1, memory_limit="256MB", temp_directory=str(tmp_path / "spill"))
    store = DuckDBOfflineStore(RepoConfig(project="t", offline_store=cfg, repo_path=tmp_path))
    assert isinstance(store, OfflineStore)
    con = store._cursor()
    assert con.execute("SELECT current_setting('threads')").fetchone() == (1,)
    assert "244.1 MiB" in str(con.execute("SELECT current_setting('memory_limit')").fetchone())  # 256 MB
    assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)


def test_config_through_feature_store_yaml_keys(tmp_path: Path) -> None:
    from ladle.config import load_config

    try:
        config = load_config(
            {"project": "t", "online_store": {"type": "sqlite"}, "offline_store": {"type": "file", "threads": 1}},
            tmp_path,
        )
    except ConfigError as exc:  # the online backend is a teammate's module; only ours matters here
        if "sqlite" in str(exc):
            pytest.skip(f"online sqlite backend not importable: {exc}")
        raise
    assert isinstance(config.offline_store, DuckDBOfflineStoreConfig)
    with pytest.raises(ConfigError, match=r"offline_store\.bogus"):
        load_config({"project": "t", "offline_store": {"type": "duckdb", "bogus": 1}}, tmp_path)


# -- sources ----------------------------------------------------------------------------------


def test_file_directory_and_glob_sources(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "month=2024-01").mkdir(parents=True)
    pq.write_table(ticks(["A"], [0], [0], [1.0]), data / "month=2024-01" / "a.parquet")
    pq.write_table(ticks(["B"], [1], [1], [2.0]), data / "b.parquet")
    pq.write_table(ticks(["C"], [2], [2], [3.0]), data / ".hidden.parquet")
    pq.write_table(ticks(["D"], [3], [3], [4.0]), data / "_tmp.parquet")
    (data / "_SUCCESS").write_text("")
    everything = (at(-1), at(10))
    for path, codes in [
        ("data", {"A", "B"}),
        ("data/", {"A", "B"}),
        ("data/*.parquet", {"B"}),
        ("data/**/*.parquet", {"A", "B"}),
        ("data/b.parquet", {"B"}),
    ]:
        out = collect(store.pull_all(view_on(path), *everything))
        assert set(out.column("code").to_pylist()) == codes, path
        assert "month" not in out.column_names
    schema = store.source_schema(FileSource(path="data", timestamp_field="ts"))
    assert schema.names == ["code", "ts", "created", "price"]


def test_missing_or_unreadable_source(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        store.source_schema(FileSource(path="nope.parquet", timestamp_field="ts"))
    with pytest.raises(DataSourceError, match="does not exist"):
        store.pull_latest(view_on("missing_dir/"), at(0), at(1))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataSourceError, match="cannot read"):
        store.source_schema(FileSource(path="junk.parquet", timestamp_field="ts"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="no Parquet files"):
        store.source_schema(FileSource(path="empty", timestamp_field="ts"))
    assert collect(store.pull_latest(view_on("empty"), at(0), at(1))).num_rows == 0
    pq.write_table(
        pa.table({"code": ["A"], "ts": pa.array([at(0)], TS), "price": [1.0]}), tmp_path / "nocreated.parquet"
    )
    with pytest.raises(DataSourceError, match="created"):
        store.pull_all(view_on("nocreated.parquet"), at(0), at(1))


# -- pull_latest / pull_all -------------------------------------------------------------------


def test_pull_latest_newest_row_per_entity_in_window(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    pq.write_table(
        ticks(
            ["A", "A", "A", "A", "B", "B", "C"],
            [0, 10, 10, 10, 5, 30, 40],
            [0, 11, 12, None, 5, 30, 40],
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        ),
        tmp_path / "t.parquet",
    )
    out = collect(store.pull_latest(view_on("t.parquet"), at(0), at(30))).sort_by("code")
    assert out.column_names == ["code", "price", EVENT_TIMESTAMP, CREATED_TIMESTAMP]
    assert out.column("code").to_pylist() == ["A", "B"]
    assert out.column("price").to_pylist() == [3.0, 6.0]  # created 12 beats 11 and NULL; B at 30 (end inclusive)
    assert out.schema.field(EVENT_TIMESTAMP).type == TS
    assert out.column(EVENT_TIMESTAMP).to_pylist() == [at(10), at(30)]
    assert out.column(CREATED_TIMESTAMP).to_pylist() == [at(12), at(30)]
    only_start = collect(store.pull_latest(view_on("t.parquet"), at(0), at(0)))
    assert only_start.column("price").to_pylist() == [1.0]


def test_pull_latest_skips_null_keys(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    table = ticks(["A", "A"], [0, 5], [0, 5], [1.0, 2.0])
    table = table.set_column(0, "code", pa.array(["A", None]))
    pq.write_table(table, tmp_path / "nk.parquet")
    out = collect(store.pull_latest(view_on("nk.parquet"), at(0), at(10)))
    assert out.column("code").to_pylist() == ["A"] and out.column("price").to_pylist() == [1.0]
    assert collect(store.pull_all(view_on("nk.parquet"), at(0), at(10))).num_rows == 2


def test_pull_latest_batches_are_bounded(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    n = 5000
    pq.write_table(
        ticks([f"K{i}" for i in range(n)], [1] * n, [1] * n, [float(i) for i in range(n)]), tmp_path / "m.parquet"
    )
    batches = list(store.pull_latest(view_on("m.parquet"), at(0), at(2), batch_rows=1000))
    assert sum(b.num_rows for b in batches) == n
    assert len(batches) >= 5 and max(b.num_rows for b in batches) <= 1000


def test_pull_latest_of_distinct_entities_is_every_keyed_row_in_the_window(
    store: DuckDBOfflineStore, tmp_path: Path
) -> None:
    # one row per entity in the window (the shortcut without the join), a null key and rows outside
    table = ticks(["A", "B", "C", "D", "A"], [1, 2, 3, 4, 50], [1, 2, 3, 4, 50], [1.0, 2.0, 3.0, 4.0, 5.0])
    table = table.set_column(0, "code", pa.array(["A", "B", None, "D", "A"]))
    pq.write_table(table, tmp_path / "d.parquet")
    out = collect(store.pull_latest(view_on("d.parquet"), at(0), at(10))).sort_by("code")
    assert out.column_names == ["code", "price", EVENT_TIMESTAMP, CREATED_TIMESTAMP]
    assert out.column("code").to_pylist() == ["A", "B", "D"]  # A's later row is outside; C's key is null
    assert out.column("price").to_pylist() == [1.0, 2.0, 4.0]
    assert out.column(CREATED_TIMESTAMP).to_pylist() == [at(1), at(2), at(4)]


def test_pull_latest_finds_a_repeat_after_a_distinct_start(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    # the window's first rows (more than the sample) are all distinct; one entity comes back at the end
    from ladle.offline.session import DISTINCT_SAMPLE_ROWS

    n = DISTINCT_SAMPLE_ROWS + 1000
    codes = [f"K{i}" for i in range(n)] + ["K7", "K9"]
    minutes = [1.0] * n + [2.0, 0.5]  # K7's repeat is newer, K9's older
    prices = [float(i) for i in range(n)] + [-7.0, -9.0]
    pq.write_table(ticks(codes, minutes, minutes, prices), tmp_path / "r.parquet")
    out = collect(store.pull_latest(view_on("r.parquet"), at(0), at(10), batch_rows=10_000))
    assert out.num_rows == n
    assert len(set(out.column("code").to_pylist())) == n
    price = dict(zip(out.column("code").to_pylist(), out.column("price").to_pylist(), strict=True))
    assert price["K7"] == -7.0 and price["K9"] == 9.0 and price["K8"] == 8.0


def test_pull_latest_when_key_hashes_collide(
    store: DuckDBOfflineStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the whole-window check counts distinct 64-bit hashes: a collision says "a repeat" of distinct
    # keys; the aggregate then finds none, and every keyed row must still come back
    from ladle.offline import pull

    real = pull.distinct_sql

    def colliding(*args: object, **kwargs: object) -> str:
        sql = real(*args, **kwargs)  # type: ignore[arg-type]
        limit = kwargs.get("limit", args[4] if len(args) > 4 else None)
        return sql if limit is not None else sql.replace("count(DISTINCT h)", "count(DISTINCT h) - 1")

    monkeypatch.setattr(pull, "distinct_sql", colliding)
    pq.write_table(ticks(["A", "B", "C"], [1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0]), tmp_path / "h.parquet")
    out = collect(store.pull_latest(view_on("h.parquet"), at(0), at(10))).sort_by("code")
    assert out.column("price").to_pylist() == [1.0, 2.0, 3.0]


def test_pull_latest_distinct_composite_keys(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    # (A, 1) and (A, 2) are two entities: no join needed; (B, 1) twice is one entity
    table = pa.table(
        {
            "code": ["A", "A", "B"],
            "market_id": [1, 2, 1],
            "ts": pa.array([at(1), at(2), at(3)], TS),
            "created": pa.array([at(1), at(2), at(3)], TS),
            "price": [1.0, 2.0, 3.0],
        }
    )
    pq.write_table(table, tmp_path / "c.parquet")
    source = FileSource(path="c.parquet", timestamp_field="ts", created_timestamp_column="created")
    view = FeatureView(
        name="pm", entities=[commodity, market], schema=[Field(name="price", dtype=Float64)], source=source
    )
    out = collect(store.pull_latest(view, at(0), at(10))).sort_by([("code", "ascending"), ("market_id", "ascending")])
    assert out.column("price").to_pylist() == [1.0, 2.0, 3.0]
    pq.write_table(
        pa.concat_tables([table, table.slice(2, 1).set_column(4, "price", pa.array([4.0]))]), tmp_path / "c.parquet"
    )
    again = collect(store.pull_latest(view, at(0), at(10))).sort_by([("code", "ascending"), ("market_id", "ascending")])
    assert again.num_rows == 3 and again.column("price").to_pylist()[:2] == [1.0, 2.0]
    assert again.column("price").to_pylist()[2] in (3.0, 4.0)  # a tie on both times: either row


def test_pull_all_window_mapping_naive_times_and_composite_keys(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "c": ["A", "A", "B"],
                "mkt": pa.array([1, 2, 1], pa.int32()),
                "when": pa.array([at(0), at(5), at(9)], TS).cast(pa.timestamp("ns")),  # naive = UTC
                "p": [1.0, 2.0, 3.0],
            }
        ),
        tmp_path / "n.parquet",
    )
    source = FileSource(
        path="n.parquet",
        timestamp_field="ts",
        field_mapping={"c": "code", "mkt": "market_id", "when": "ts", "p": "price"},
    )
    view = FeatureView(
        name="pairs", entities=[commodity, market], schema=[Field(name="price", dtype=Float64)], source=source
    )
    out = collect(store.pull_all(view, at(0), at(5)))
    assert out.column_names == ["code", "market_id", "price", EVENT_TIMESTAMP, CREATED_TIMESTAMP]
    assert out.schema.field("market_id").type == pa.int64()
    assert sorted(out.column(EVENT_TIMESTAMP).to_pylist()) == [at(0), at(5)]
    assert out.column(CREATED_TIMESTAMP).null_count == 2
    latest = collect(store.pull_latest(view, at(-60), at(60)))
    assert latest.num_rows == 3  # (A,1), (A,2), (B,1) are three entities


def test_pull_from_a_push_source_reads_its_batch_source(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    pq.write_table(ticks(["A"], [1], [1], [9.0]), tmp_path / "p.parquet")
    push = PushSource(
        name="push", batch_source=FileSource(path="p.parquet", timestamp_field="ts", created_timestamp_column="created")
    )
    view = FeatureView(name="pv", entities=[commodity], schema=[Field(name="price", dtype=Float64)], source=push)
    assert collect(store.pull_latest(view, at(0), at(2))).column("price").to_pylist() == [9.0]


# -- append -----------------------------------------------------------------------------------


def test_append_to_directory_writes_new_files_atomically(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    source = FileSource(path="hist/", timestamp_field="ts", created_timestamp_column="created")
    assert store.append(source, ticks(["A"], [0], [0], [1.0])) == 1
    rows = ticks(["A", "B"], [5, 5], [5, 5], [2.0, 3.0])
    assert store.append(source, rows) == 2
    files = sorted(p.name for p in (tmp_path / "hist").iterdir())
    assert len(files) == 2 and all(f.startswith("part-") and f.endswith(".parquet") for f in files)
    out = collect(store.pull_latest(view_on("hist/"), at(0), at(10))).sort_by("code")
    assert out.column("price").to_pylist() == [2.0, 3.0]


def test_append_casts_to_stored_types_and_rejects_incompatible(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    source = FileSource(path="h2", timestamp_field="ts", created_timestamp_column="created")
    (tmp_path / "h2").mkdir()
    store.append(source, ticks(["A"], [0], [0], [1.0]))
    newer = pa.table(
        {
            "code": ["A"],
            "ts": pa.array([at(3)], TS).cast(pa.timestamp("ns", tz="Europe/Paris")),
            "created": pa.array([at(3)], TS),
            "price": pa.array([7], pa.int64()),
        }
    )
    store.append(source, newer)
    stored = [pq.read_schema(p) for p in (tmp_path / "h2").iterdir()]
    assert all(s.field("price").type == pa.float64() for s in stored)
    assert collect(store.pull_latest(view_on("h2"), at(0), at(5))).column("price").to_pylist() == [7.0]
    bad = newer.set_column(3, "price", pa.array(["seven"]))
    with pytest.raises(SchemaMismatchError, match="price"):
        store.append(source, bad)
    with pytest.raises(SchemaMismatchError, match="timestamp"):
        store.append(source, newer.drop_columns(["ts"]))
    assert len(list((tmp_path / "h2").iterdir())) == 2


def test_append_to_single_file_rewrites_it(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    pq.write_table(ticks(["A"], [0], [0], [1.0]), tmp_path / "one.parquet")
    source = FileSource(path="one.parquet", timestamp_field="ts", created_timestamp_column="created")
    threads = [
        threading.Thread(target=store.append, args=(source, ticks([f"T{i}"], [i], [i], [float(i)]))) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pq.read_table(tmp_path / "one.parquet").num_rows == 5  # the lock serializes rewrites: none lost
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    fresh = FileSource(path="new/fresh.parquet", timestamp_field="ts")
    assert store.append(fresh, ticks(["A"], [0], [0], [1.0])) == 1
    assert (tmp_path / "new" / "fresh.parquet").is_file()


def test_append_to_glob_must_match_the_glob(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    ok = FileSource(path="g/*.parquet", timestamp_field="ts")
    store.append(ok, ticks(["A"], [0], [0], [1.0]))
    assert len(list((tmp_path / "g").glob("*.parquet"))) == 1
    strict = FileSource(path="g/2024-*.parquet", timestamp_field="ts")
    with pytest.raises(DataSourceError, match="glob"):
        store.append(strict, ticks(["A"], [0], [0], [1.0]))


def test_history_sees_int_features_as_declared(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"market_id": pa.array([1], pa.int32()), "ts": pa.array([at(0)], TS), "n": pa.array([5], pa.int32())}),
        tmp_path / "i.parquet",
    )
    view = FeatureView(
        name="counts",
        entities=[market],
        schema=[Field(name="n", dtype=Int64)],
        source=FileSource(path="i.parquet", timestamp_field="ts"),
    )
    out = collect(store.pull_latest(view, at(0), at(1)))
    assert out.schema.field("n").type == pa.int64() and out.schema.field("market_id").type == pa.int64()
