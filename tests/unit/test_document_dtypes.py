"""Feast's MAP / JSON / STRUCT value types as Ladle's ``Map``, ``Json`` and ``Struct(...)`` dtypes.

Names round-trip through the registry form, the row format stores them as JSON text (rows of older
layouts stay readable), bad values are refused naming the column, and a view with them materializes
from Parquet (struct and JSON text columns) into SQLite and the real Redis and reads back as objects.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.errors import DefinitionError, SchemaMismatchError
from ladle.online.codec.stamped import ViewLayout, encode, prepare
from ladle.online.codec.stamped_decode import decode_view
from ladle.server.wire import encode_values
from ladle.types import (
    Array,
    DType,
    Int64,
    Json,
    Map,
    String,
    Struct,
    ValueType,
    compatible,
    dtype_from_arrow,
    dtype_from_name,
    dtype_from_value_type,
)

TS = pa.timestamp("us", tz="UTC")
PROFILE = Struct({"name": String, "age": Int64})


def test_names_and_value_types_are_feasts() -> None:
    assert (Map.value_type, Json.value_type, PROFILE.value_type) == (20, 32, 34)
    assert PROFILE.name == "Struct(name: String, age: Int64)"
    for dtype in (Map, Json, PROFILE, Struct({"a": Array(String), "b": Struct({"c": Int64})})):
        assert dtype_from_name(dtype.name) == dtype
    assert dtype_from_value_type(ValueType.MAP) == Map
    assert dtype_from_value_type(ValueType.JSON) == Json
    with pytest.raises(DefinitionError, match="lists of Map, Json or Struct"):
        Array(Map)
    with pytest.raises(DefinitionError, match="at least one field"):
        Struct({})


def test_sources_of_structs_maps_and_text_fit_document_fields() -> None:
    struct_col = pa.struct([("a", pa.string())])
    assert dtype_from_arrow(struct_col) == Map
    assert dtype_from_arrow(pa.map_(pa.string(), pa.int64())) == Map
    assert compatible(PROFILE, dtype_from_arrow(struct_col))
    assert compatible(Json, String)  # JSON text in a VARCHAR column
    assert not compatible(Int64, Map)
    assert not compatible(Map, Int64)


def _blobs(schema: list[tuple[str, DType]], columns: dict[str, Any]) -> list[bytes]:
    n = len(next(iter(columns.values())))
    table = pa.table({**columns, "event_timestamp": pa.array(list(range(n)), pa.int64()).cast(TS)})
    out: list[bytes] = encode(prepare(ViewLayout(schema), "v", table, 7), 0, n).to_pylist()
    return out


def test_rows_round_trip_as_objects_from_struct_map_and_text_columns() -> None:
    schema: list[tuple[str, DType]] = [("m", Map), ("j", Json), ("p", PROFILE), ("n", Int64)]
    columns = {
        "m": pa.array([[("k", 1), ("z", 2)], None], pa.map_(pa.string(), pa.int64())),
        "j": pa.array(['{"zones": ["north"], "max": 3.5}', "[1, 2]"]),
        "p": pa.array([{"name": "ann", "age": 41}, {"name": "bo", "age": None}]),
        "n": pa.array([1, 2]),
    }
    got = decode_view(ViewLayout(schema), [*_blobs(schema, columns), None], ["m", "j", "p", "n"], lambda fp: None)
    assert got.values == {
        "m": [{"k": 1, "z": 2}, None, None],
        "j": [{"zones": ["north"], "max": 3.5}, [1, 2], None],
        "p": [{"name": "ann", "age": 41}, {"name": "bo", "age": None}, None],
        "n": [1, 2, None],
    }


def test_rows_written_before_a_map_was_added_still_read() -> None:
    old_schema: list[tuple[str, DType]] = [("n", Int64)]
    new_schema: list[tuple[str, DType]] = [("n", Int64), ("m", Map)]
    old, new = ViewLayout(old_schema), ViewLayout(new_schema)
    old_blob = _blobs(old_schema, {"n": [5]})[0]
    new_blob = _blobs(new_schema, {"n": [6], "m": ['{"a": "b"}']})[0]
    got = decode_view(new, [old_blob, new_blob], ["n", "m"], {old.fingerprint: old}.get)
    assert got.values == {"n": [5, 6], "m": [None, {"a": "b"}]}


@pytest.mark.parametrize(
    ("dtype", "values", "words"),
    [
        (Json, ["{not json"], "holds text that is not JSON"),
        (Map, ["[1, 2]"], "holds a list, not an object"),
        (PROFILE, [[1, 2]], "holds a list, not an object"),
    ],
)
def test_bad_document_values_are_refused_naming_the_column(dtype: DType, values: list[Any], words: str) -> None:
    with pytest.raises(SchemaMismatchError, match=words) as caught:
        _blobs([("doc", dtype)], {"doc": pa.array(values)})
    assert "'doc'" in str(caught.value)


def test_grpc_values_use_feasts_fields() -> None:
    """map_val (20), json_val (32), struct_val (34); nested values typed from their JSON (string_val, null_val).

    (The end-to-end test in tests/feast_compat parses these bytes with the real Feast's protos.)
    """
    entry = b"\x0a\x01a" + b"\x12\x03" + b"\x12\x01x"  # key "a", value Value{string_val: "x"}
    assert encode_values([{"a": "x"}], Map) == b"\x0a\x0d" + b"\xa2\x01\x0a" + b"\x0a\x08" + entry
    assert encode_values([[1, 2]], Json) == b"\x0a\x08" + b"\x82\x02\x05[1,2]"
    entry = b"\x0a\x01n" + b"\x12\x03" + b"\x98\x01\x00"  # key "n", value Value{null_val: NULL}
    assert (
        encode_values([{"n": None}, None], PROFILE) == b"\x0a\x0d" + b"\x92\x02\x0a" + b"\x0a\x08" + entry + b"\x0a\x00"
    )


REPO = """
from datetime import timedelta
from ladle import Entity, FeatureView, Field, FileSource, Int64, Json, Map, String, Struct

driver = Entity(name="driver", join_keys=["driver_id"])
source = FileSource(name="docs", path="data/docs.parquet", timestamp_field="event_timestamp")
docs = FeatureView(
    name="driver_docs",
    entities=[driver],
    ttl=timedelta(days=2),
    schema=[
        Field(name="meta", dtype=Map),
        Field(name="config", dtype=Json),
        Field(name="profile", dtype=Struct({"name": String, "age": Int64})),
    ],
    source=source,
)
"""


@pytest.fixture(params=["sqlite", "redis"])
def online_yaml(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return "{type: sqlite, path: data/online.db}"
    address = request.getfixturevalue("redis_address")
    return f'{{type: redis, connection_string: "{address}"}}'


def test_a_view_of_documents_materializes_and_serves(tmp_path: Path, online_yaml: str) -> None:
    project = f"docs_{uuid.uuid4().hex[:10]}"
    (tmp_path / "data").mkdir()
    (tmp_path / "feature_store.yaml").write_text(
        f"project: {project}\nprovider: local\nregistry: data/registry.db\nonline_store: {online_yaml}\n"
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(REPO))
    now = datetime.now(UTC).replace(microsecond=0)
    table = pa.table(
        {
            "driver_id": pa.array([1, 1, 2], pa.int64()),
            "event_timestamp": pa.array([now - timedelta(hours=3), now - timedelta(hours=1), now], TS),
            "meta": pa.array([{"car": "old"}, {"car": "suv"}, {"car": "van"}]),
            "config": pa.array(['{"max": 1}', '{"max": 2, "zones": ["n"]}', None]),
            "profile": pa.array([{"name": "a", "age": 30}, {"name": "a", "age": 31}, {"name": "b", "age": 50}]),
        }
    )
    pq.write_table(table, tmp_path / "data" / "docs.parquet")
    runner = CliRunner()
    assert (applied := runner.invoke(cli, ["-c", str(tmp_path), "apply"])).exit_code == 0, applied.output
    start, end = (now - timedelta(days=1)).isoformat(), (now + timedelta(minutes=1)).isoformat()
    assert (done := runner.invoke(cli, ["-c", str(tmp_path), "materialize", start, end])).exit_code == 0, done.output
    store = FeatureStore(repo_path=tmp_path)
    try:
        features = ["driver_docs:meta", "driver_docs:config", "driver_docs:profile"]
        got = store.get_online_features(features=features, entity_rows=[{"driver_id": 1}, {"driver_id": 2}])
        assert got.to_dict() == {
            "driver_id": [1, 2],
            "meta": [{"car": "suv"}, {"car": "van"}],
            "config": [{"max": 2, "zones": ["n"]}, None],
            "profile": [{"name": "a", "age": 31}, {"name": "b", "age": 50}],
        }
        historical = store.get_historical_features(
            pa.table({"driver_id": [1], "event_timestamp": pa.array([now - timedelta(hours=2)], TS)}).to_pandas(),
            features,
        ).to_df()
        assert json.loads(historical["config"][0]) == {"max": 1}
        pushed = {
            "driver_id": [2],
            "event_timestamp": [now + timedelta(seconds=1)],
            "meta": [{"car": "bike", "seats": 1}],
            "config": ['{"max": 9}'],
            "profile": [{"name": "b", "age": 51}],
        }
        store.write_to_online_store("driver_docs", pa.table(pushed).to_pandas())
        got = store.get_online_features(features=features, entity_rows=[{"driver_id": 2}])
        assert got.to_dict() == {
            "driver_id": [2],
            "meta": [{"car": "bike", "seats": 1}],
            "config": [{"max": 9}],
            "profile": [{"name": "b", "age": 51}],
        }
        with pytest.raises(SchemaMismatchError, match="'meta'"):
            store.write_to_online_store("driver_docs", pa.table({**pushed, "meta": [[1, 2]]}).to_pandas())
    finally:
        store.teardown()  # the Redis run's keys are the shared server's: remove them
        store.close()


def test_offline_append_turns_json_text_back_into_the_sources_nested_columns() -> None:
    """A push to the offline store appends JSON text to a Parquet source whose column is a struct / map."""
    from ladle.offline.append import _conform

    schema = pa.schema([("s", pa.struct([("a", pa.int64())])), ("m", pa.map_(pa.string(), pa.string()))])
    rows = pa.table({"s": ['{"a": 1}', None], "m": ['{"k": "v"}', "{}"]})
    conformed = _conform(rows, schema)
    assert conformed.schema == schema
    assert conformed.column("s").to_pylist() == [{"a": 1}, None]
    assert conformed.column("m").to_pylist() == [[("k", "v")], []]
    with pytest.raises(SchemaMismatchError, match="column 's'"):
        _conform(pa.table({"s": ["{not json"]}), schema)
