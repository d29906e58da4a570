"""Definitions: validation errors, resolution against a source schema, projections, spec round trips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest

from ladle import (
    Array,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Float64,
    Int32,
    Int64,
    PushSource,
    String,
    ValueType,
)
from ladle.definitions import source_from_spec
from ladle.errors import DataSourceError, DefinitionError, FeatureNotFoundError
from ladle.types import dtype_from_name

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
untyped = Entity(name="station", join_keys=["station_id"])
source = FileSource(
    name="prices_source",
    path="data/prices.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)


def make_view(**overrides: Any) -> FeatureView:
    kwargs: dict[str, Any] = {
        "name": "prices",
        "source": source,
        "entities": [commodity],
        "ttl": timedelta(days=1),
        "schema": [Field(name="close_price", dtype=Float64), Field(name="volume", dtype=Int64)],
    }
    kwargs.update(overrides)
    return FeatureView(**kwargs)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Entity(name="bad name"), "entity name 'bad name' is invalid"),
        (lambda: Entity(name="__reserved"), "reserved"),
        (lambda: Entity(name=3), "entity name 3 is invalid"),  # type: ignore[arg-type]
        (lambda: Entity(name="e", join_keys=["a", "b"]), "has 2 join keys"),
        (lambda: Entity(name="e", join_keys="a"), "join_keys must be a list"),
        (lambda: Entity(name="e", value_type=ValueType.DOUBLE), "DOUBLE cannot be a join key"),
        (lambda: Entity(name="e", tags={"k": 1}), "must map a string to a string"),  # type: ignore[dict-item]
        (lambda: Entity(name="e", description=5), "description must be a string"),  # type: ignore[arg-type]
    ],
    ids=["space", "reserved", "not-str", "two-keys", "str-keys", "float-key", "tag-type", "description-type"],
)
def test_entity_errors(build: Any, match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        build()


def test_entity_defaults_and_round_trip() -> None:
    e = Entity(name="commodity", tags={"b": "2", "a": "1"})
    assert e.join_keys == ["commodity"] and e.value_type is None
    assert Entity.from_spec(commodity.to_spec()) == commodity
    assert list(e.to_spec()["tags"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Field(name="1st", dtype=Float64), "field name '1st' is invalid"),
        (lambda: Field(name="x", dtype=float), "dtype must be a Ladle dtype"),  # type: ignore[arg-type]
        (lambda: Array(Array(Float64)), "cannot be nested"),
        (lambda: dtype_from_name("Decimal"), "unknown dtype 'Decimal'"),
    ],
    ids=["name", "python-type", "nested-array", "unknown-dtype"],
)
def test_field_errors(build: Any, match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        build()


def test_field_round_trip() -> None:
    f = Field(name="tags", dtype=Array(String), description="d", tags={"k": "v"})
    assert Field.from_spec(f.to_spec()) == f
    assert f.dtype.value_type == ValueType.STRING_LIST


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: FileSource(path="", timestamp_field="ts"), "path must be a non-empty string"),
        (lambda: FileSource(path="x.parquet"), "timestamp_field is required"),
        (lambda: FileSource(path="x.csv", timestamp_field="ts", file_format="csv"), "'csv' is not supported"),
        (
            lambda: FileSource(path="x.parquet", timestamp_field="ts", created_timestamp_column="ts"),
            "must be different columns",
        ),
        (lambda: FileSource(path="x.parquet", timestamp_field="ts", field_mapping={"a": 1}), "map str to str"),
        (lambda: PushSource(name="", batch_source=source), "a name is required"),
        (
            lambda: PushSource(name="p", batch_source=PushSource(name="q", batch_source=source)),
            "must be a batch source",
        ),
        (lambda: source_from_spec({"type": "kinesis"}), "unknown data source type 'kinesis'"),
    ],
    ids=["empty-path", "no-ts", "csv", "same-ts", "mapping", "push-no-name", "push-of-push", "unknown-type"],
)
def test_source_errors(build: Any, match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        build()


def test_source_round_trips() -> None:
    push = PushSource(name="prices_push", batch_source=source)
    assert source_from_spec(source.to_spec()) == source
    assert source_from_spec(push.to_spec()) == push
    assert push.timestamp_field == "event_timestamp"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"name": "bad-name"}, "feature view name 'bad-name' is invalid"),
        ({"ttl": timedelta(seconds=-1)}, "is negative"),
        ({"ttl": 3600}, "ttl must be a datetime.timedelta"),
        ({"source": "data/prices.parquet"}, "source must be a data source"),
        ({"entities": ["commodity"]}, "entities must be Entity objects"),
        ({"entities": [commodity, Entity(name="other", join_keys=["commodity_code"])]}, "appears twice"),
        (
            {"schema": [Field(name="close_price", dtype=Float64), Field(name="close_price", dtype=Float32)]},
            r"duplicate field names \['close_price'\]",
        ),
        ({"schema": [Field(name="event_timestamp", dtype=Int64)]}, "timestamp columns of the source"),
        ({"schema": [Field(name="commodity_code", dtype=Int64)]}, "entity 'commodity' says STRING"),
    ],
    ids=[
        "name",
        "negative-ttl",
        "ttl-type",
        "source-type",
        "entity-type",
        "dup-key",
        "dup-field",
        "ts-field",
        "key-type",
    ],
)
def test_feature_view_errors(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        make_view(**overrides)


def test_feature_view_split_and_round_trip() -> None:
    view = make_view(schema=[Field(name="commodity_code", dtype=String), Field(name="close_price", dtype=Float64)])
    assert view.join_keys == ["commodity_code"] and view.feature_names == ["close_price"]
    assert view.is_resolved
    assert FeatureView.from_spec(view.to_spec(), {"commodity": commodity}) == view
    with pytest.raises(DefinitionError, match="unknown entities"):
        FeatureView.from_spec(view.to_spec(), {})
    assert make_view(ttl=None).ttl == timedelta(0)


SOURCE_SCHEMA = pa.schema(
    [
        ("commodity_code", pa.string()),
        ("station_id", pa.int32()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created", pa.timestamp("us", tz="UTC")),
        ("close_price", pa.float64()),
        ("volume", pa.int32()),
        ("note", pa.large_string()),
    ]
)


def test_resolve_infers_features_and_key_dtypes() -> None:
    view = FeatureView(name="all", source=source, entities=[untyped])
    assert not view.is_resolved
    resolved = view.resolve(SOURCE_SCHEMA)
    assert [(f.name, f.dtype) for f in resolved.entity_columns] == [("station_id", Int32)]
    assert resolved.feature_names == ["commodity_code", "close_price", "volume", "note"]
    assert resolved.is_resolved


def test_resolve_allows_widening() -> None:
    assert make_view().resolve(SOURCE_SCHEMA).feature("volume").dtype == Int64  # int32 data, Int64 field


@pytest.mark.parametrize(
    ("view", "match"),
    [
        (
            FeatureView(name="v", source=source, entities=[Entity(name="x", join_keys=["missing_key"])]),
            "no join key column 'missing_key'",
        ),
        (make_view(schema=[Field(name="open_price", dtype=Float64)]), "no column for feature 'open_price'"),
        (
            make_view(schema=[Field(name="volume", dtype=Int32), Field(name="close_price", dtype=Int64)]),
            "column 'close_price' is Float64 but the view declares Int64",
        ),
        (make_view(source=FileSource(path="p.parquet", timestamp_field="ts")), "no timestamp column 'ts'"),
        (
            make_view(
                source=FileSource(
                    path="p.parquet", timestamp_field="event_timestamp", created_timestamp_column="inserted_at"
                )
            ),
            "no timestamp column 'inserted_at'",
        ),
    ],
    ids=["join-key", "feature", "narrowing", "timestamp", "created-timestamp"],
)
def test_resolve_errors(view: FeatureView, match: str) -> None:
    with pytest.raises(DataSourceError, match=match):
        view.resolve(SOURCE_SCHEMA)


def test_resolve_uses_field_mapping() -> None:
    mapped = FileSource(path="p.parquet", timestamp_field="event_timestamp", field_mapping={"close_price": "price"})
    view = make_view(source=mapped, schema=[Field(name="price", dtype=Float64)])
    assert view.resolve(SOURCE_SCHEMA).feature_names == ["price"]


def test_projections() -> None:
    view = make_view()
    proj = view[["close_price"]]
    assert (proj.view_name, proj.features, proj.name_to_use) == ("prices", ("close_price",), "prices")
    aliased = proj.with_name("p2").with_join_key_map({"commodity_code": "code"})
    assert aliased.name_to_use == "p2" and dict(aliased.join_key_map) == {"commodity_code": "code"}
    assert type(proj).from_spec(aliased.to_spec()) == aliased
    assert view.with_name("alias").features == ("close_price", "volume")
    with pytest.raises(DefinitionError, match="a list"):
        view["close_price"]  # type: ignore[index]
    with pytest.raises(FeatureNotFoundError, match="prices:nope"):
        view[["nope"]]
    with pytest.raises(DefinitionError, match="alias name"):
        proj.with_name("bad alias")


@pytest.mark.parametrize(
    ("features", "match"),
    [
        ([], "has no features"),
        (["prices:close_price"], "must be feature views or projections"),
        ([make_view(), make_view()[["volume"]]], "appear twice"),
    ],
    ids=["empty", "string-ref", "same-view-twice"],
)
def test_feature_service_errors(features: list[Any], match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        FeatureService(name="svc", features=features)


def test_feature_service_round_trip_with_aliases() -> None:
    view = make_view()
    service = FeatureService(name="svc", features=[view, view[["volume"]].with_name("again")], tags={"t": "1"})
    assert service.feature_view_names == ["prices", "prices"]
    assert FeatureService.from_spec(service.to_spec()) == service
