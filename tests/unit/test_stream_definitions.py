"""The streaming definitions: every validation error of the constructors, specs and the registry round trip."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import (
    Aggregation,
    AvroFormat,
    Entity,
    FeatureStore,
    Field,
    FileSource,
    Float64,
    Int64,
    JsonFormat,
    KafkaSource,
    PushSource,
    StreamFeatureView,
    String,
    ValueType,
)
from ladle.definitions import Udf, view_from_spec
from ladle.definitions.formats import format_from_spec
from ladle.definitions.sources import source_from_spec
from ladle.errors import DataSourceError, DefinitionError

batch = FileSource(name="ticks_history", path="data/ticks/", timestamp_field="ts")
commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)


def kafka(**kw: Any) -> KafkaSource:
    args: dict[str, Any] = {
        "name": "ticks",
        "kafka_bootstrap_servers": "127.0.0.1:9092",
        "topic": "ticks",
        "timestamp_field": "ts",
        "message_format": JsonFormat(),
        "batch_source": batch,
    }
    args.update(kw)
    return KafkaSource(**args)


def doubled(df: pd.DataFrame) -> pd.DataFrame:
    """A udf."""
    return df.assign(price=df["price"] * 2)


def with_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """A derive."""
    return df.assign(ratio=df["hi"] / df["lo"])


def unchanged(df: pd.DataFrame) -> pd.DataFrame:
    """A derive that adds nothing."""
    return df


def stream(**kw: Any) -> StreamFeatureView:
    args: dict[str, Any] = {"name": "v", "source": kafka(), "entities": [commodity]}
    args.update(kw)
    return StreamFeatureView(**args)


def mean(column: str = "price", **kw: Any) -> Aggregation:
    return Aggregation(column=column, function="mean", time_window=kw.pop("time_window", timedelta(hours=1)), **kw)


Build = Callable[[], object]

ERRORS: list[tuple[str, Build, str]] = [
    # KafkaSource
    ("kafka-no-name", lambda: kafka(name=""), "a name is required"),
    ("kafka-no-ts", lambda: kafka(timestamp_field=""), "timestamp_field is required"),
    (
        "kafka-servers-differ",
        lambda: kafka(bootstrap_servers="a:1", kafka_bootstrap_servers="b:1"),
        "bootstrap_servers and kafka_bootstrap_servers differ",
    ),
    ("kafka-no-servers", lambda: kafka(kafka_bootstrap_servers=None), "kafka_bootstrap_servers is required"),
    ("kafka-bad-topic", lambda: kafka(topic="no spaces"), "not a valid Kafka topic name"),
    ("kafka-no-topic", lambda: kafka(topic=None), "not a valid Kafka topic name"),
    ("kafka-format", lambda: kafka(message_format="json"), "message_format must be"),
    ("kafka-no-batch", lambda: kafka(batch_source=None), "batch_source is required"),
    (
        "kafka-push-batch",
        lambda: kafka(batch_source=PushSource(name="p", batch_source=batch)),
        "batch_source must be a batch source",
    ),
    ("kafka-batch-ts", lambda: kafka(timestamp_field="t2"), "differs from its batch source's"),
    ("kafka-batch-created", lambda: kafka(created_timestamp_column="c"), "created_timestamp_column differs"),
    (
        "kafka-negative-delay",
        lambda: kafka(watermark_delay_threshold=timedelta(seconds=-1)),
        "must be a non-negative timedelta",
    ),
    ("kafka-delay-type", lambda: kafka(watermark_delay_threshold=30), "must be a non-negative timedelta"),
    ("kafka-mapping", lambda: kafka(field_mapping={"a": 1}), "map str to str"),
    (
        "kafka-format-lacks-ts",
        lambda: kafka(message_format=JsonFormat("code string, price double")),
        "declares no field ['ts']",
    ),
    # JsonFormat / AvroFormat
    ("json-not-str", lambda: JsonFormat(5), "schema_json must be a string"),  # type: ignore[arg-type]
    ("json-bad-part", lambda: JsonFormat("price"), "cannot read 'price'"),
    ("json-bad-type", lambda: JsonFormat("price decimal"), "cannot read 'price decimal'"),
    ("json-dupes", lambda: JsonFormat("a int, a string"), "fields ['a'] appear twice"),
    ("avro-not-json", lambda: AvroFormat("{"), "schema_json is not JSON"),
    ("avro-not-record", lambda: AvroFormat('{"type": "string"}'), "must be an Avro record schema"),
    ("avro-no-name", lambda: AvroFormat('{"type": "record", "fields": [{"type": "int"}]}'), "has no name"),
    (
        "avro-union",
        lambda: AvroFormat('{"type": "record", "fields": [{"name": "a", "type": ["int", "string"]}]}'),
        "only [null, T] is supported",
    ),
    (
        "avro-type",
        lambda: AvroFormat('{"type": "record", "fields": [{"name": "a", "type": "fixed"}]}'),
        "which Ladle cannot store",
    ),
    (
        "avro-dupes",
        lambda: AvroFormat(
            '{"type": "record", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}'
        ),
        "appear twice",
    ),
    ("format-unknown", lambda: format_from_spec({"format": "protobuf"}), "unknown message format"),
    ("source-spec-incomplete", lambda: source_from_spec({"type": "kafka"}), "kafka data source spec has no 'name'"),
    # Aggregation
    ("agg-column", lambda: Aggregation(column="", function="sum", time_window=timedelta(hours=1)), "column"),
    ("agg-function", lambda: Aggregation(column="p", function="median", time_window=timedelta(1)), "not one of"),
    ("agg-no-window", lambda: Aggregation(column="p", function="sum"), "must be a datetime.timedelta"),
    ("agg-zero-window", lambda: mean(time_window=timedelta(0)), "must be positive"),
    ("agg-sub-micro", lambda: mean(time_window=timedelta(microseconds=0.4)), "must be positive"),
    ("agg-slide-type", lambda: mean(slide_interval=5), "must be a datetime.timedelta"),
    ("agg-slide-whole", lambda: mean(slide_interval=timedelta(minutes=7)), "not a whole number of slide_interval"),
    ("agg-name", lambda: mean(name="has space"), "aggregation name"),
    # StreamFeatureView
    ("sfv-file-source", lambda: stream(source=batch), "must be a KafkaSource or PushSource"),
    ("sfv-spark", lambda: stream(mode="spark"), "needs a Spark cluster"),
    ("sfv-mode", lambda: stream(mode="sql"), "is not one of"),
    ("sfv-ts", lambda: stream(timestamp_field="other"), "differs from the source's"),
    ("sfv-agg-type", lambda: stream(aggregations=["mean"]), "aggregations must be Aggregation"),
    ("sfv-lambda", lambda: stream(udf=lambda df: df), "not a lambda"),
    ("sfv-not-function", lambda: stream(udf=len), "must be a Python function"),
    ("sfv-udf-string", lambda: stream(udf=doubled, udf_string="def other(): pass"), "udf_string does not match"),
    ("sfv-derive-alone", lambda: stream(derive=with_ratio), "derive needs aggregations"),
    ("sfv-dupe-names", lambda: stream(aggregations=[mean(name="m"), mean(name="m")]), "appear twice"),
    ("sfv-name-is-key", lambda: stream(aggregations=[mean(name="code")]), "are key columns"),
    (
        "sfv-slides",
        lambda: stream(
            aggregations=[
                mean(slide_interval=timedelta(minutes=5)),
                mean(name="m2", slide_interval=timedelta(minutes=10)),
            ]
        ),
        "different slide_interval",
    ),
    (
        "sfv-derive-schema",
        lambda: stream(aggregations=[mean(name="hi"), mean(name="lo")], derive=with_ratio),
        "with derive, list the features",
    ),
    (
        "sfv-unknown-feature",
        lambda: stream(aggregations=[mean(name="m")], schema=[Field(name="x", dtype=Float64)]),
        "is neither an aggregation output",
    ),
    (
        "sfv-feature-dtype",
        lambda: stream(aggregations=[mean(name="m")], schema=[Field(name="m", dtype=Int64)]),
        "gives Float64",
    ),
    (
        "sfv-push-aggregations",
        lambda: stream(source=PushSource(name="p", batch_source=batch), aggregations=[mean()]),
        "need a KafkaSource",
    ),
    (
        "sfv-push-udf",
        lambda: stream(source=PushSource(name="p", batch_source=batch), udf=doubled),
        "need a KafkaSource",
    ),
    (
        "sfv-key-not-declared",
        lambda: stream(source=kafka(message_format=JsonFormat("ts timestamp, price double"))),
        "join keys ['code'] are not fields",
    ),
]


@pytest.mark.parametrize(("build", "match"), [(b, m) for _, b, m in ERRORS], ids=[i for i, _, _ in ERRORS])
def test_definition_errors(build: Build, match: str) -> None:
    with pytest.raises(DefinitionError, match=_literal(match)):
        build()


def _literal(text: str) -> str:
    import re

    return re.escape(text)


def test_defaults_and_feast_names() -> None:
    agg = Aggregation(column="price", function="mean", time_window=timedelta(days=7))
    assert agg.name == "price_mean_7d" and agg.output_dtype == Float64
    assert Aggregation(column="v", function="count", time_window=timedelta(minutes=90)).name == "v_count_90m"
    view = stream(aggregations=[agg], udf=doubled)
    assert view.feature_names == ["price_mean_7d"]
    assert view.udf_string == view.udf.source if view.udf else False
    assert view.is_computed and view.max_window == timedelta(days=7) and view.slide_interval is None
    source = kafka(bootstrap_servers="127.0.0.1:9092", kafka_bootstrap_servers=None)
    assert source.bootstrap_servers == "127.0.0.1:9092"
    assert not stream().is_computed


def test_specs_round_trip_with_transforms_unbound() -> None:
    view = stream(
        source=kafka(
            message_format=AvroFormat(
                json.dumps(
                    {
                        "type": "record",
                        "name": "Tick",
                        "fields": [
                            {"name": "code", "type": "string"},
                            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                            {"name": "price", "type": ["null", "double"]},
                        ],
                    }
                )
            ),
            watermark_delay_threshold=timedelta(seconds=30),
        ),
        aggregations=[mean(name="hi"), mean(name="lo", slide_interval=None)],
        udf=doubled,
        derive=with_ratio,
        schema=[Field(name="hi", dtype=Float64), Field(name="lo", dtype=Float64), Field(name="ratio", dtype=Float64)],
    )
    back = view_from_spec(view.to_spec(), {"commodity": commodity})
    assert isinstance(back, StreamFeatureView)
    assert back.to_spec() == view.to_spec() and back == view
    assert back.udf is not None and back.udf.fn is None
    assert back.udf == view.udf  # the function itself does not count
    assert back.bind(view).udf is not None


def test_binding_refuses_a_changed_function() -> None:
    udf = Udf.from_function("udf", doubled)
    changed = Udf(udf.module, udf.qualname, udf.source + "\n# edited", "0" * 64)
    with pytest.raises(DefinitionError, match="differs from the registry's version; run 'ladle apply'"):
        changed.bind(doubled)


# -- against a source, and through the registry -------------------------------------------------

T0 = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    (tmp_path / "data" / "ticks").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "code": ["CL", "GC"],
                "ts": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
                "price": [1.0, 2.0],
                "volume": pa.array([1, 2], pa.int64()),
                "note": ["a", "b"],
                "_kafka_partition": pa.array([0, 0], pa.int32()),
                "_kafka_offset": pa.array([0, 1], pa.int64()),
            }
        ),
        tmp_path / "data" / "ticks" / "part-0.parquet",
    )
    config = {
        "project": "streams",
        "registry": {"path": "data/registry.db", "cache_mode": "sync"},
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {"type": "duckdb"},
    }
    fs = FeatureStore(repo_path=tmp_path, config=config)
    yield fs
    fs.close()
    fs.registry.close()


def test_resolve_infers_plain_features_but_never_the_kafka_columns(store: FeatureStore) -> None:
    view = stream()
    resolved = view.resolve(store.offline_store.source_schema(batch))
    assert resolved.feature_names == ["price", "volume", "note"]
    assert [(f.name, f.dtype) for f in resolved.entity_columns] == [("code", String)]


def test_resolve_learns_the_udf_output(store: FeatureStore) -> None:
    schema = store.offline_store.source_schema(batch)

    unbound = view_from_spec(stream(udf=doubled).to_spec(), {"commodity": commodity})
    with pytest.raises(DefinitionError, match="is not loaded"):
        unbound.resolve(schema)
    view = stream(udf=doubled).resolve(schema)
    assert view.feature_names == ["price", "volume", "note"] and view.is_computed
    with pytest.raises(DataSourceError, match="'note' is String, not a number"):
        stream(aggregations=[mean("note")]).resolve(schema)
    with pytest.raises(DefinitionError, match="does not give the features"):
        stream(
            aggregations=[mean(name="hi"), mean(name="lo")],
            derive=unchanged,
            schema=[Field(name="hi", dtype=Float64), Field(name="ratio", dtype=Float64)],
        ).resolve(schema)


def test_apply_reads_back_equal_and_versions_each_change(store: FeatureStore) -> None:
    view = stream(
        aggregations=[mean(name="m"), Aggregation(column="volume", function="count", time_window=timedelta(1))]
    )
    store.apply([commodity, view])
    back = store.get_stream_feature_view("v")
    assert back.to_spec() == view.resolve(store.offline_store.source_schema(batch)).to_spec()
    assert not store.plan([commodity, view]).has_changes
    changed = stream(
        aggregations=[
            mean(name="m", time_window=timedelta(hours=2)),
            Aggregation(column="volume", function="count", time_window=timedelta(1)),
        ]
    )
    plan = store.plan([commodity, changed])
    assert plan.has_changes and any("time_window_us" in line for line in plan.lines())
    store.apply([commodity, changed])
    assert [h.version for h in store.history("feature_view", "v")] == [1, 2]
    assert [v.name for v in store.list_stream_feature_views()] == ["v"]


def test_plan_shows_a_changed_udf_source(store: FeatureStore) -> None:
    store.apply([commodity, stream(udf=doubled, schema=[Field(name="price", dtype=Float64)])])
    # the same function after an edit of the repo file: same name, other source
    edited = Udf("x", "doubled", "def doubled(df):\n    return df.assign(price=df['price'] * 3)\n", "1" * 64)
    plan = store.plan(
        [commodity, stream(udf=edited, schema=[Field(name="price", dtype=Float64)])], skip_source_validation=True
    )
    assert plan.has_changes
    assert any("udf" in line for line in plan.lines())


def test_the_batch_source_field_mapping_renames_event_columns(store: FeatureStore) -> None:
    mapped = FileSource(path="data/ticks/", timestamp_field="ts", field_mapping={"volume": "qty"})
    view = stream(
        source=kafka(batch_source=mapped),
        aggregations=[Aggregation(column="qty", function="sum", time_window=timedelta(hours=1), name="qty_1h")],
    )
    store.apply([commodity, view])
    rows = pd.DataFrame({"code": ["CL", "GC", "CL"], "event_timestamp": [T0, T0, T0 - timedelta(seconds=1)]})
    got = store.get_historical_features(rows, ["v:qty_1h"]).to_df()
    assert got["qty_1h"].tolist()[:2] == [1.0, 2.0] and pd.isna(got["qty_1h"].iloc[2])
