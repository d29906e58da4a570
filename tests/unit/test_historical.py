"""Point-in-time retrieval: hand-written edge cases, against a hand-built registry snapshot.

Expected values are written out by hand from the rules in docs/offline.md (latest event_ts <= row
ts, within ttl, highest created ts on ties, left join, entity-frame order kept).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64, ValueType
from ladle.config import RepoConfig
from ladle.errors import (
    DataSourceError,
    EntityKeyError,
    FeatureNameCollisionError,
    FeatureNotFoundError,
    FeatureViewNotFoundError,
    RequestError,
)
from ladle.offline.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from ladle.registry.base import RegistrySnapshot
from ladle.retrieval.historical import historical_job

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)
market = Entity(name="market", join_keys=["market_id"], value_type=ValueType.INT64)


def write(path: Path, columns: dict[str, list[object]], types: dict[str, pa.DataType] | None = None) -> None:
    types = types or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: pa.array(values, type=types.get(name)) for name, values in columns.items()}
    pq.write_table(pa.table(arrays), path)


def snapshot(*views: FeatureView, services: tuple[FeatureService, ...] = ()) -> RegistrySnapshot:
    entities = {e.name: e for v in views for e in v.entities}
    return RegistrySnapshot(
        project="test",
        version=1,
        entities=entities,
        feature_views={v.name: v for v in views},
        feature_services={s.name: s for s in services},
    )


@pytest.fixture
def store(tmp_path: Path) -> DuckDBOfflineStore:
    return DuckDBOfflineStore(RepoConfig(project="test", offline_store=DuckDBOfflineStoreConfig(), repo_path=tmp_path))


@pytest.fixture
def prices(tmp_path: Path) -> FeatureView:
    """Rows of code A at 0, 10, 20 (twice: created 21 and 25, and a null-created one) and B at 5."""
    write(
        tmp_path / "prices.parquet",
        {
            "code": ["A", "A", "A", "A", "A", "B"],
            "ts": [at(0), at(10), at(20), at(20), at(20), at(5)],
            "created": [at(0), at(10), at(21), at(25), None, at(5)],
            "price": [1.0, 2.0, 3.0, 4.0, 5.0, 10.0],
        },
        {"ts": TS, "created": TS},
    )
    source = FileSource(
        name="prices_src", path="prices.parquet", timestamp_field="ts", created_timestamp_column="created"
    )
    return FeatureView(
        name="prices",
        entities=[commodity],
        ttl=timedelta(minutes=15),
        schema=[Field(name="price", dtype=Float64)],
        source=source,
    )


def entity_frame(rows: list[tuple[str, datetime]]) -> pd.DataFrame:
    return pd.DataFrame({"code": [r[0] for r in rows], "event_timestamp": [r[1] for r in rows]})


def retrieve(store: DuckDBOfflineStore, views: list[FeatureView], entity_df: object, features: object, **kw: object):
    job = historical_job(snapshot(*views), store, entity_df, features, **kw)  # type: ignore[arg-type]
    return job.to_arrow()


def test_latest_row_not_after_the_entity_time(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    rows = [("A", at(9)), ("A", at(10)), ("A", at(-1)), ("B", at(6)), ("C", at(30))]
    out = retrieve(store, [prices], entity_frame(rows), ["prices:price"])
    assert out.column("price").to_pylist() == [1.0, 2.0, None, 10.0, None]


def test_created_timestamp_breaks_ties_and_null_created_loses(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    out = retrieve(store, [prices], entity_frame([("A", at(20)), ("A", at(34))]), ["prices:price"])
    # three rows at 20: created 21 -> 3.0, 25 -> 4.0, NULL -> 5.0; the latest created wins.
    assert out.column("price").to_pylist() == [4.0, 4.0]


def test_ttl_window_is_inclusive_and_relative_to_each_row(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    rows = [("A", at(25)), ("A", at(19)), ("B", at(20)), ("B", at(20) + timedelta(seconds=1))]
    # ttl 15 min: A at 25 -> row at 20 (age 5); A at 19 -> row at 10 (age 9);
    # B at 20 -> row at 5, exactly 15 min old (kept); one second later it is too old.
    out = retrieve(store, [prices], entity_frame(rows), ["prices:price"])
    assert out.column("price").to_pylist() == [4.0, 2.0, 10.0, None]


def test_ttl_boundary_to_the_microsecond(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    write(tmp_path / "one.parquet", {"code": ["A"], "ts": [at(0)], "v": [7.0]}, {"ts": TS})
    view = FeatureView(
        name="one",
        entities=[commodity],
        ttl=timedelta(minutes=1),
        schema=[Field(name="v", dtype=Float64)],
        source=FileSource(path="one.parquet", timestamp_field="ts"),
    )
    rows = [
        ("A", at(1)),
        ("A", at(1) + timedelta(microseconds=1)),
        ("A", at(0)),
        ("A", at(0) - timedelta(microseconds=1)),
    ]
    out = retrieve(store, [view], entity_frame(rows), ["one:v"])
    assert out.column("v").to_pylist() == [7.0, None, 7.0, None]


def test_zero_ttl_means_no_limit(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    forever = FeatureView(
        name="forever", entities=[commodity], ttl=timedelta(0), schema=prices.features, source=prices.source
    )
    out = retrieve(store, [forever], entity_frame([("B", at(60 * 24 * 365))]), ["forever:price"])
    assert out.column("price").to_pylist() == [10.0]


def test_output_keeps_entity_columns_order_rows_and_types(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    frame = pd.DataFrame(
        {
            "label": [1, 0, 1, 1],
            "event_timestamp": [at(11), at(5), at(11), at(0)],
            "code": ["A", "B", "A", "A"],
            "note": ["x", "y", "z", None],
        },
        index=[40, 10, 30, 20],
    )
    out = retrieve(store, [prices], frame, ["prices:price"])
    assert out.column_names == ["label", "event_timestamp", "code", "note", "price"]
    assert out.column("label").to_pylist() == [1, 0, 1, 1]
    assert out.column("note").to_pylist() == ["x", "y", "z", None]
    assert out.column("price").to_pylist() == [2.0, 10.0, 2.0, 1.0]
    assert out.schema.field("event_timestamp").type == TS


def test_time_zones_of_the_entity_frame(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    new_york, kolkata = ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")
    # The same instants as at(10) and at(9) written in other zones, and naive (= UTC) values.
    mixed = [
        at(10).astimezone(new_york),
        at(9).astimezone(kolkata),
        at(10).replace(tzinfo=None),
        at(9).astimezone(timezone(timedelta(hours=-3))),
    ]
    frame = pd.DataFrame({"code": ["A"] * 4, "event_timestamp": pd.Series(mixed, dtype=object)})
    out = retrieve(store, [prices], frame, ["prices:price"])
    assert out.column("price").to_pylist() == [2.0, 1.0, 2.0, 1.0]
    assert out.column("event_timestamp").to_pylist() == [at(10), at(9), at(10), at(9)]

    tokyo = pd.DataFrame({"code": ["A"], "event_timestamp": pd.DatetimeIndex([at(10)]).tz_convert("Asia/Tokyo")})
    assert retrieve(store, [prices], tokyo, ["prices:price"]).column("price").to_pylist() == [2.0]


@pytest.mark.parametrize(
    "arrow_type",
    [pa.timestamp("ns"), pa.timestamp("ms", tz="America/New_York"), pa.timestamp("s"), pa.timestamp("ns", tz="UTC")],
)
def test_source_timestamp_encodings(store: DuckDBOfflineStore, tmp_path: Path, arrow_type: pa.DataType) -> None:
    stamps = pa.array([at(0), at(10)], type=TS).cast(arrow_type)  # naive values are UTC wall-clock times
    pq.write_table(pa.table({"code": ["A", "A"], "ts": stamps, "v": [1.0, 2.0]}), tmp_path / "enc.parquet")
    view = FeatureView(
        name="enc",
        entities=[commodity],
        ttl=timedelta(minutes=5),
        schema=[Field(name="v", dtype=Float64)],
        source=FileSource(path="enc.parquet", timestamp_field="ts"),
    )
    rows = [("A", at(4)), ("A", at(6)), ("A", at(10)), ("A", at(10) - timedelta(seconds=1))]
    assert retrieve(store, [view], entity_frame(rows), ["enc:v"]).column("v").to_pylist() == [1.0, None, 2.0, None]


def test_composite_keys_several_views_and_full_names(
    store: DuckDBOfflineStore, prices: FeatureView, tmp_path: Path
) -> None:
    write(
        tmp_path / "quotes" / "part-0.parquet",
        {"code": ["A", "A", "B"], "market_id": [1, 2, 1], "ts": [at(0), at(0), at(0)], "bid": [1.5, 2.5, 3.5]},
        {"ts": TS},
    )
    write(
        tmp_path / "quotes" / "part-1.parquet",
        {"code": ["A"], "market_id": [1], "ts": [at(8)], "bid": [1.75]},
        {"ts": TS},
    )
    quotes = FeatureView(
        name="quotes",
        entities=[commodity, market],
        ttl=timedelta(minutes=60),
        schema=[Field(name="bid", dtype=Float64)],
        source=FileSource(path="quotes/", timestamp_field="ts"),
    )
    frame = pd.DataFrame(
        {"code": ["A", "A", "B", "B", "A"], "market_id": [1, 2, 1, 2, 1], "event_timestamp": [at(9)] * 4 + [at(100)]}
    )
    out = retrieve(store, [prices, quotes], frame, ["quotes:bid", "prices:price"], full_feature_names=True)
    assert out.column_names == ["code", "market_id", "event_timestamp", "quotes__bid", "prices__price"]
    assert out.column("quotes__bid").to_pylist() == [1.75, 2.5, 3.5, None, None]
    assert out.column("prices__price").to_pylist() == [1.0, 1.0, 10.0, 10.0, None]


def test_feature_service_with_alias_and_join_key_map(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    service = FeatureService(name="svc", features=[prices.with_name("px").with_join_key_map({"code": "underlying"})])
    frame = pd.DataFrame({"underlying": ["A", "B"], "event_timestamp": [at(12), at(12)]})
    job = historical_job(snapshot(prices, services=(service,)), store, frame, service, full_feature_names=True)
    out = job.to_arrow()
    assert out.column_names == ["underlying", "event_timestamp", "px__price"]
    assert out.column("px__price").to_pylist() == [2.0, 10.0]


def test_field_mapping_and_integer_key_widths(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    write(
        tmp_path / "m.parquet",
        {"mkt": [1, 2], "when": [at(0), at(0)], "raw_volume": [100, 200]},
        {"mkt": pa.int32(), "when": TS, "raw_volume": pa.int32()},
    )
    view = FeatureView(
        name="volumes",
        entities=[market],
        schema=[Field(name="volume", dtype=Int64)],
        source=FileSource(
            path="m.parquet",
            timestamp_field="ts",
            field_mapping={"mkt": "market_id", "raw_volume": "volume", "when": "ts"},
        ),
    )
    frame = pa.table({"market_id": pa.array([2, 1, 3], pa.int16()), "event_timestamp": pa.array([at(1)] * 3, TS)})
    out = retrieve(store, [view], frame, ["volumes:volume"])
    assert out.column("volume").to_pylist() == [200, 100, None]
    assert out.schema.field("volume").type == pa.int64()


def test_entity_frame_from_files_and_strings(store: DuckDBOfflineStore, prices: FeatureView, tmp_path: Path) -> None:
    pq.write_table(pa.table({"code": ["A"], "event_timestamp": pa.array([at(11)], TS)}), tmp_path / "e.parquet")
    assert retrieve(store, [prices], tmp_path / "e.parquet", ["prices:price"]).column("price").to_pylist() == [2.0]
    assert retrieve(store, [prices], str(tmp_path / "e.parquet"), ["prices"]).column("price").to_pylist() == [2.0]
    (tmp_path / "e.csv").write_text("code,event_timestamp\nA,2024-01-01T00:11:00Z\nB,2024-01-01 00:06:00\n")
    assert retrieve(store, [prices], tmp_path / "e.csv", ["prices:price"]).column("price").to_pylist() == [2.0, 10.0]
    strings = pd.DataFrame(
        {"code": ["A", "A"], "event_timestamp": ["2024-01-01T00:11:00+00:00", "2024-01-01T01:11:00+01:00"]}
    )
    assert retrieve(store, [prices], strings, ["prices:price"]).column("price").to_pylist() == [2.0, 2.0]


def test_timestamp_column_inferred_when_single(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    frame = pd.DataFrame({"code": ["A"], "asof": [at(11)]})
    out = retrieve(store, [prices], frame, ["prices:price"])
    assert out.column_names == ["code", "asof", "price"]
    assert out.column("price").to_pylist() == [2.0]


def test_job_outputs(store: DuckDBOfflineStore, prices: FeatureView, tmp_path: Path) -> None:
    frame = entity_frame([("A", at(11)), ("B", at(6))])
    job = historical_job(snapshot(prices), store, frame, ["prices:price"])
    assert "ASOF JOIN" in job.sql
    df = job.to_df()
    assert list(df["price"]) == [2.0, 10.0]
    assert str(df["event_timestamp"].dt.tz) == "UTC"
    job.to_parquet(tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").equals(job.to_arrow())
    job.to_csv(tmp_path / "out.csv")  # type: ignore[attr-defined]
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "code,event_timestamp,price" and len(lines) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- errors -----------------------------------------------------------------------------------


def test_missing_join_key(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    with pytest.raises(EntityKeyError, match="'code'"):
        retrieve(store, [prices], pd.DataFrame({"event_timestamp": [at(0)]}), ["prices:price"])


def test_wrong_key_dtype(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    with pytest.raises(EntityKeyError, match="int64"):
        retrieve(store, [prices], pd.DataFrame({"code": [1], "event_timestamp": [at(0)]}), ["prices:price"])


def test_unknown_view_and_feature(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    frame = entity_frame([("A", at(0))])
    with pytest.raises(FeatureViewNotFoundError):
        retrieve(store, [prices], frame, ["nope:price"])
    with pytest.raises(FeatureNotFoundError):
        retrieve(store, [prices], frame, ["prices:nope"])


def test_empty_frame_and_bad_timestamps(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    with pytest.raises(RequestError, match="empty"):
        retrieve(store, [prices], entity_frame([]).astype({"event_timestamp": "datetime64[us, UTC]"}), ["prices:price"])
    with pytest.raises(RequestError, match="timestamp column"):
        retrieve(store, [prices], pd.DataFrame({"code": ["A"]}), ["prices:price"])
    with pytest.raises(RequestError, match="several timestamp columns"):
        retrieve(store, [prices], pd.DataFrame({"code": ["A"], "a": [at(0)], "b": [at(0)]}), ["prices:price"])
    with pytest.raises(RequestError, match="missing timestamps"):
        retrieve(
            store, [prices], pd.DataFrame({"code": ["A", "A"], "event_timestamp": [at(0), None]}), ["prices:price"]
        )
    with pytest.raises(RequestError, match="not timestamps"):
        retrieve(store, [prices], pd.DataFrame({"code": ["A"], "event_timestamp": ["soon"]}), ["prices:price"])
    with pytest.raises(RequestError, match="does not exist"):
        retrieve(store, [prices], "/nonexistent/entities.parquet", ["prices:price"])


def test_feature_name_collisions(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    frame = pd.DataFrame({"code": ["A"], "event_timestamp": [at(0)], "price": [1.0]})
    with pytest.raises(RequestError, match="price"):
        retrieve(store, [prices], frame, ["prices:price"])
    other = FeatureView(name="other", entities=[commodity], schema=prices.features, source=prices.source)
    with pytest.raises(FeatureNameCollisionError):
        retrieve(store, [prices, other], entity_frame([("A", at(0))]), ["prices:price", "other:price"])


def test_missing_source_and_wrong_schema(store: DuckDBOfflineStore, prices: FeatureView, tmp_path: Path) -> None:
    gone = FeatureView(
        name="gone",
        entities=[commodity],
        schema=prices.features,
        source=FileSource(path="gone.parquet", timestamp_field="ts"),
    )
    frame = entity_frame([("A", at(0))])
    with pytest.raises(DataSourceError, match="does not exist"):
        retrieve(store, [gone], frame, ["gone:price"])
    write(tmp_path / "bad.parquet", {"code": ["A"], "ts": [at(0)], "price": ["not a number"]}, {"ts": TS})
    bad = FeatureView(
        name="bad",
        entities=[commodity],
        schema=prices.features,
        source=FileSource(path="bad.parquet", timestamp_field="ts"),
    )
    with pytest.raises(DataSourceError, match="price"):
        retrieve(store, [bad], frame, ["bad:price"])
    write(tmp_path / "nokey.parquet", {"ts": [at(0)], "price": [1.0]}, {"ts": TS})
    nokey = FeatureView(
        name="nokey",
        entities=[commodity],
        schema=prices.features,
        source=FileSource(path="nokey.parquet", timestamp_field="ts"),
    )
    with pytest.raises(DataSourceError, match="join key"):
        retrieve(store, [nokey], frame, ["nokey:price"])


def test_inferred_key_dtype_checked_against_the_source(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    untyped = Entity(name="station", join_keys=["station"])
    write(tmp_path / "w.parquet", {"station": ["JFK"], "ts": [at(0)], "temp": [3.0]}, {"ts": TS})
    view = FeatureView(
        name="weather",
        entities=[untyped],
        schema=[Field(name="temp", dtype=Float64)],
        source=FileSource(path="w.parquet", timestamp_field="ts"),
    )
    frame = pd.DataFrame({"station": ["JFK"], "event_timestamp": [at(1)]})
    assert retrieve(store, [view], frame, ["weather:temp"]).column("temp").to_pylist() == [3.0]
    with pytest.raises(EntityKeyError):
        retrieve(store, [view], pd.DataFrame({"station": [7], "event_timestamp": [at(1)]}), ["weather:temp"])


# -- through FeatureStore and the CLI (SQL registry + apply) ------------------------------------


@pytest.fixture
def applied_repo(tmp_path: Path, prices: FeatureView) -> Path:
    from ladle import FeatureStore

    (tmp_path / "feature_store.yaml").write_text(
        "project: hist\nregistry: registry.db\n"
        "online_store:\n  type: sqlite\n  path: online.db\noffline_store:\n  type: file\n"
    )
    store = FeatureStore(repo_path=tmp_path)
    service = FeatureService(name="px_service", features=[prices])
    store.apply([commodity, prices, service])
    store.close()
    return tmp_path


def test_feature_store_apply_then_retrieve(applied_repo: Path) -> None:
    from ladle import FeatureStore

    store = FeatureStore(repo_path=applied_repo)
    frame = entity_frame([("B", at(6)), ("A", at(11)), ("A", at(40))])
    by_refs = store.get_historical_features(entity_df=frame, features=["prices:price"]).to_df()
    assert by_refs["price"].iloc[:2].tolist() == [10.0, 2.0] and pd.isna(by_refs["price"].iloc[2])
    by_service = store.get_historical_features(entity_df=frame, feature_service="px_service", full_feature_names=True)
    assert by_service.to_arrow().column("prices__price").to_pylist() == [10.0, 2.0, None]
    store.close()


def test_cli_get_historical_features(applied_repo: Path) -> None:
    from click.testing import CliRunner

    from ladle.cli.main import cli

    pq.write_table(
        pa.table({"code": ["A", "B"], "event_timestamp": pa.array([at(11), at(6)], TS)}), applied_repo / "e.parquet"
    )
    runner = CliRunner()
    base = ["--chdir", str(applied_repo), "get-historical-features", "--entities", str(applied_repo / "e.parquet")]
    result = runner.invoke(cli, [*base, "--features", "prices:price", "--output", str(applied_repo / "out.parquet")])
    assert result.exit_code == 0, result.output
    assert pq.read_table(applied_repo / "out.parquet").column("price").to_pylist() == [2.0, 10.0]
    result = runner.invoke(
        cli,
        [*base, "--feature-service", "px_service", "--full-feature-names", "--output", str(applied_repo / "o.csv")],
    )
    assert result.exit_code == 0, result.output
    assert (applied_repo / "o.csv").read_text().splitlines()[0] == "code,event_timestamp,prices__price"
    result = runner.invoke(cli, [*base, "--features", "nope:x", "--output", str(applied_repo / "x.parquet")])
    assert result.exit_code == 1 and "FeatureViewNotFoundError" in result.output
    result = runner.invoke(cli, [*base, "--output", str(applied_repo / "x.parquet")])
    assert result.exit_code == 1 and "exactly one" in result.output
    assert not (applied_repo / "x.parquet").exists()


def test_view_without_entities_matches_every_row(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    write(tmp_path / "macro.parquet", {"ts": [at(0), at(10)], "rate": [5.0, 5.25]}, {"ts": TS})
    macro = FeatureView(
        name="macro",
        entities=[],
        ttl=timedelta(days=1),
        schema=[Field(name="rate", dtype=Float64)],
        source=FileSource(path="macro.parquet", timestamp_field="ts"),
    )
    out = retrieve(store, [macro], entity_frame([("A", at(5)), ("B", at(11)), ("C", at(-1))]), ["macro:rate"])
    assert out.column("rate").to_pylist() == [5.0, 5.25, None]
    latest = list(store.pull_latest(macro, at(-5), at(5)))
    assert [b.to_pydict()["rate"] for b in latest] == [[5.0]]
    assert list(store.pull_latest(macro, at(100), at(200))) == []


def test_categorical_keys_huge_ttl_and_interleaved_jobs(store: DuckDBOfflineStore, prices: FeatureView) -> None:
    forever = FeatureView(
        name="forever",
        entities=[commodity],
        ttl=timedelta(days=999_999_999),
        schema=prices.features,
        source=prices.source,
    )
    frame = entity_frame([("B", at(6)), ("A", at(11))]).astype({"code": "category"})
    first = historical_job(snapshot(prices, forever), store, frame, ["forever:price"])
    second = historical_job(snapshot(prices, forever), store, entity_frame([("A", at(0))]), ["prices:price"])
    assert second.to_arrow().column("price").to_pylist() == [1.0]
    assert first.to_arrow().column("price").to_pylist() == [10.0, 2.0]
    assert second.to_arrow().column("price").to_pylist() == [1.0]


def test_row_groups_skipped_by_the_time_window(store: DuckDBOfflineStore, tmp_path: Path) -> None:
    # 100 rows, one per minute, in row groups of 10: a 5-minute ttl near the end lets Parquet
    # statistics skip the early groups; the values fetched must still be those of the right rows.
    table = pa.table(
        {"code": ["A"] * 100, "ts": pa.array([at(m) for m in range(100)], TS), "v": [float(m) for m in range(100)]}
    )
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=10)
    directory = tmp_path / "split"
    directory.mkdir()
    pq.write_table(table.slice(0, 55), directory / "a.parquet", row_group_size=10)
    pq.write_table(table.slice(55), directory / "b.parquet", row_group_size=7)
    rows = [("A", at(97.5)), ("A", at(83)), ("A", at(120)), ("A", at(61.2)), ("A", at(54.9))]
    for path in ("groups.parquet", "split"):
        view = FeatureView(
            name="g",
            entities=[commodity],
            ttl=timedelta(minutes=5),
            schema=[Field(name="v", dtype=Float64)],
            source=FileSource(path=path, timestamp_field="ts"),
        )
        out = retrieve(store, [view], entity_frame(rows), ["g:v"])
        assert out.column("v").to_pylist() == [97.0, 83.0, None, 61.0, 54.0], path
