"""plan / apply / teardown through the FeatureStore, on the embedded stores (SQLite registry and online, DuckDB)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    PushSource,
    String,
    ValueType,
)
from ladle.errors import DataSourceError, DefinitionError, RepoError
from ladle.repo import RepoContents

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    data = tmp_path / "data"
    data.mkdir()
    ts = pa.timestamp("us", tz="UTC")
    pq.write_table(
        pa.table(
            {
                "commodity_code": pa.array(["wti", "gold"]),
                "event_timestamp": pa.array([T0, T0], ts),
                "close_price": pa.array([75.0, 2000.0]),
                "volume": pa.array([10, 20], pa.int32()),
                "currency": pa.array(["USD", "USD"]),
            }
        ),
        data / "prices.parquet",
    )
    config = {
        "project": "carbon",
        "registry": {"path": "data/registry.db", "cache_mode": "sync"},
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {"type": "duckdb"},
    }
    fs = FeatureStore(repo_path=tmp_path, config=config)
    yield fs
    fs.close()
    fs.registry.close()


commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
untyped = Entity(name="commodity", join_keys=["commodity_code"])
source = FileSource(name="prices_source", path="data/prices.parquet", timestamp_field="event_timestamp")


def view(ttl_days: int = 1, features: tuple[str, ...] = ("close_price", "volume"), **kw: object) -> FeatureView:
    dtypes = {"close_price": Float64, "volume": Int64, "currency": String}
    return FeatureView(
        name=str(kw.pop("name", "prices")),
        source=kw.pop("source", source),  # type: ignore[arg-type]
        entities=kw.pop("entities", [commodity]),  # type: ignore[arg-type]
        ttl=timedelta(days=ttl_days),
        schema=[Field(name=f, dtype=dtypes[f]) for f in features],
        **kw,  # type: ignore[arg-type]
    )


def repo(*extra: object, ttl_days: int = 1) -> RepoContents:
    prices = view(ttl_days)
    service = FeatureService(name="model", features=[prices[["close_price"]]])
    return RepoContents.from_objects([commodity, prices, service, *extra])  # type: ignore[list-item]


def online_tables(store: FeatureStore) -> set[str]:
    with sqlite3.connect(store.repo_path / "data" / "online.db") as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows if not r[0].startswith("__")}


def test_plan_changes_nothing(store: FeatureStore) -> None:
    result = store.plan(repo())
    assert not result.applied and result.version == 0
    assert result.lines() == [
        "+ entity commodity",
        "+ data_source prices_source",
        "+ feature_view prices",
        "+ feature_service model",
    ]
    assert store.registry.version() == 0 and store.list_feature_views() == []


def test_apply_round_trip_and_no_change_means_no_version(store: FeatureStore) -> None:
    result = store.apply(repo(), partial=False)
    assert result.applied and (result.base_version, result.version) == (0, 1)
    assert len(result.added) == 4 and not result.changed and not result.removed
    assert {v.name for v in store.list_feature_views()} == {"prices"}
    assert store.get_feature_service("model").projections[0].features == ("close_price",)
    assert online_tables(store) == {"carbon:prices"}
    again = store.apply(repo(), partial=False)
    assert not again.has_changes and again.version == 1
    assert len(store.registry.history("feature_view", "prices")) == 1
    assert store.plan(repo()).lines() == []


def test_change_is_diffed_field_by_field_and_versioned(store: FeatureStore) -> None:
    store.apply(repo(), partial=False, applied_by="alice@host ladle apply")
    changed = store.plan(repo(ttl_days=2))
    assert changed.lines() == ["~ feature_view prices: ttl_seconds 86400 → 172800"]
    field = changed.changed[0].fields[0]
    assert (field.path, field.old, field.new) == ("ttl_seconds", 86400, 172800)
    store.apply(repo(ttl_days=2), partial=False, applied_by="bob@host ladle apply")
    history = store.registry.history("feature_view", "prices")
    assert [(h.version, h.applied_by) for h in history] == [(1, "alice@host ladle apply"), (2, "bob@host ladle apply")]
    assert store.get_feature_view("prices").ttl == timedelta(days=2)


def test_feature_list_changes_are_named(store: FeatureStore) -> None:
    store.apply(repo(), partial=False)
    wider = view(features=("close_price", "currency"))
    result = store.plan([commodity, wider, FeatureService(name="model", features=[wider[["close_price"]]])])
    assert result.lines() == ["~ feature_view prices: features.volume removed; features.currency added (dtype=String)"]


def test_full_apply_removes_what_the_repo_dropped(store: FeatureStore) -> None:
    other = view(name="prices_wide", features=("currency",))
    store.apply(repo(other), partial=False)
    assert online_tables(store) == {"carbon:prices", "carbon:prices_wide"}
    store.registry.record_materialization("prices_wide", T0, T0 + timedelta(days=1), 2)
    result = store.apply(repo(), partial=False)
    assert result.lines() == ["- feature_view prices_wide"]
    assert "prices_wide" not in store.snapshot(allow_cache=False).feature_views
    assert [h.spec is None for h in store.registry.history("feature_view", "prices_wide")] == [False, True]
    assert online_tables(store) == {"carbon:prices"}
    assert store.registry.watermark("prices_wide") is None


def test_partial_apply_keeps_other_objects_and_deletes_on_request(store: FeatureStore) -> None:
    store.apply(repo(), partial=False)
    extra = view(name="prices_wide", features=("currency",))
    result = store.apply([extra])  # Python API: partial, like Feast
    assert result.lines() == ["+ feature_view prices_wide"]
    assert set(store.snapshot().feature_views) == {"prices", "prices_wide"}
    result = store.apply([], objects_to_delete=[extra])
    assert result.lines() == ["- feature_view prices_wide"]
    assert set(store.snapshot().feature_views) == {"prices"}
    with pytest.raises(RepoError, match="both applied and deleted"):
        store.apply([extra], objects_to_delete=[extra])


def test_watermark_survives_reapply_of_changed_view(store: FeatureStore) -> None:
    store.apply(repo(), partial=False)
    store.registry.record_materialization("prices", T0, T0 + timedelta(days=3), 2)
    store.apply(repo(ttl_days=5), partial=False)
    assert store.registry.watermark("prices") == T0 + timedelta(days=3)


def test_features_and_key_dtypes_inferred_from_source(store: FeatureStore) -> None:
    inferred = FeatureView(name="inferred", source=source, entities=[untyped])
    store.apply([untyped, inferred])
    stored = store.get_feature_view("inferred")
    assert stored.feature_names == ["close_price", "volume", "currency"]
    assert [(c.name, c.dtype.name) for c in stored.entity_columns] == [("commodity_code", "String")]
    # Inference is stable: applying the same definition again changes nothing.
    assert not store.apply([untyped, inferred]).has_changes


def test_service_of_whole_inferred_view_lists_its_features(store: FeatureStore) -> None:
    inferred = FeatureView(name="inferred", source=source, entities=[commodity])
    store.apply([commodity, inferred, FeatureService(name="all", features=[inferred])])
    assert store.get_feature_service("all").projections[0].features == ("close_price", "volume", "currency")


int_commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.INT64)
nowhere = FileSource(path="data/none.parquet", timestamp_field="event_timestamp")
INVALID = {
    "missing-entity": ([view()], DefinitionError, "uses entity 'commodity', but it is not defined"),
    "service-missing-view": (
        [commodity, FeatureService(name="s", features=[view()])],
        DefinitionError,
        "feature view 'prices', which does not exist",
    ),
    "service-missing-feature": (
        [commodity, view(), FeatureService(name="s", features=[view(features=("currency",))])],
        DefinitionError,
        r"has no features \['currency'\]",
    ),
    "missing-file": ([commodity, view(source=nowhere)], DataSourceError, "none.parquet"),
    "entity-mismatch": ([untyped, view(entities=[commodity])], DefinitionError, "keyed on"),
    "key-dtype": ([int_commodity, view(entities=[int_commodity])], DataSourceError, "join key column"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_apply_writes_nothing(store: FeatureStore, case: str) -> None:
    objects, error, match = INVALID[case]
    with pytest.raises(error, match=match):
        store.apply(objects)  # type: ignore[arg-type]
    assert store.registry.version() == 0 and online_tables(store) == set()


def test_missing_source_column_is_reported(store: FeatureStore) -> None:
    bad = FeatureView(name="bad", source=source, entities=[commodity], schema=[Field(name="open_price", dtype=Float64)])
    with pytest.raises(DataSourceError, match="open_price"):
        store.apply([commodity, bad])
    assert store.registry.version() == 0


def test_removing_a_used_entity_is_refused(store: FeatureStore) -> None:
    store.apply(repo(), partial=False)
    with pytest.raises(DefinitionError, match="this apply removes it"):
        store.apply([], objects_to_delete=[commodity])
    assert store.registry.version() == 1


def test_skip_source_validation(store: FeatureStore) -> None:
    missing = FileSource(name="later", path="data/not_yet.parquet", timestamp_field="event_timestamp")
    typed = view(name="typed", source=missing)
    store_apply = store.apply([commodity, typed], skip_source_validation=True)
    assert store_apply.lines()[-1] == "+ feature_view typed"
    untyped_view = view(name="untyped", source=missing, entities=[untyped])
    with pytest.raises(DefinitionError, match="join key 'commodity_code'"):
        store.apply([untyped, untyped_view], skip_source_validation=True)
    no_features = FeatureView(name="empty", source=missing, entities=[commodity])
    with pytest.raises(DefinitionError, match="declares no features"):
        store.apply([no_features], skip_source_validation=True)


def test_push_source_and_its_batch_source_are_collected(store: FeatureStore) -> None:
    push = PushSource(name="prices_push", batch_source=source)
    fresh = view(name="fresh", source=push)
    result = store.apply([commodity, fresh])
    assert set(store.snapshot().data_sources) == {"prices_push", "prices_source"}
    assert "+ data_source prices_push" in result.lines()
    assert store.snapshot().views_fed_by("prices_push")[0].name == "fresh"


def test_teardown_removes_registry_and_online_data(store: FeatureStore) -> None:
    store.apply(repo(), partial=False)
    store.registry.record_materialization("prices", T0, T0, 1)
    store.teardown()
    assert store.registry.list_projects() == [] and store.snapshot().version == 0
    assert store.registry.watermark("prices") is None
    assert online_tables(store) == set()
    assert store.apply(repo(), partial=False).version == 1


def test_default_applied_by_names_user_host_and_command(store: FeatureStore) -> None:
    store.apply([commodity])
    who = store.registry.history("entity", "commodity")[0].applied_by
    user_host, _, command = who.partition(" ")
    assert "@" in user_host and command
