"""Shared codec pieces: the entity key, stamped rows, schema history."""

from __future__ import annotations

import struct
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladle import (
    Array,
    Bool,
    Bytes,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int32,
    Int64,
    String,
)
from ladle.errors import EntityKeyError
from ladle.online.codec.history import (
    fields_from_json,
    fields_json,
    fingerprint,
    group_by_fingerprint,
    same_features,
    scatter,
)
from ladle.online.codec.stamped import ViewLayout, encode, prepare
from ladle.online.codec.stamped_decode import decode_view
from ladle.online.keys import DUMMY_JOIN_KEY, entity_join_keys, text_entity_keys, text_entity_keys_arrow
from ladle.types import DType


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


# -- entity keys ------------------------------------------------------------------------------------

KEY_VALUES = {
    "s": st.text(max_size=6, alphabet=st.sampled_from("a:1{}é\x00")),
    "i": st.integers(-(2**63), 2**63 - 1),
    "b": st.binary(max_size=6),
}


@settings(max_examples=200, deadline=None)
@given(st.data(), st.lists(st.sampled_from(sorted(KEY_VALUES)), min_size=1, max_size=3, unique=True))
def test_entity_keys_are_injective_for_every_type_and_combination(data: st.DataObject, kinds: list[str]) -> None:
    """Distinct entities of one view (fixed key types) never share a key, separators included."""
    rows = data.draw(st.lists(st.tuples(*(KEY_VALUES[k] for k in kinds)), min_size=2, max_size=20, unique=True))
    columns = {k: [row[j] for row in rows] for j, k in enumerate(kinds)}
    keys = text_entity_keys(kinds, columns)
    assert len(set(keys)) == len(rows)
    assert keys == text_entity_keys_arrow(kinds, pa.table(columns)).to_pylist()


def test_int32_and_int64_keys_are_decimal_and_compound_keys_length_prefixed() -> None:
    table = pa.table({"id": pa.array([-5, 7], pa.int32()), "code": ["a:b", "1:x"]})
    assert text_entity_keys_arrow(["id"], table).to_pylist() == [b"-5", b"7"]
    assert text_entity_keys(["id"], {"id": [-5, 7]}) == [b"-5", b"7"]
    # sorted by name (code, id); ':' inside a value cannot shift the split
    assert text_entity_keys_arrow(["id", "code"], table).to_pylist() == [b"3:a:b2:-5", b"3:1:x1:7"]


def test_views_without_entities_have_one_empty_key() -> None:
    view = FeatureView(
        name="totals", source=FileSource(path="x.parquet", timestamp_field="ts"), schema=[Field(name="n", dtype=Int64)]
    )
    names = entity_join_keys(view)
    assert names == (DUMMY_JOIN_KEY,)
    assert text_entity_keys_arrow(names, pa.table({"n": [1, 2]})).to_pylist() == [b"", b""]
    assert text_entity_keys(names, {DUMMY_JOIN_KEY: [""]}) == [b""]
    with pytest.raises(EntityKeyError):
        text_entity_keys_arrow(["id"], pa.table({"n": [1]}))


# -- schema history (shared by every row format) -------------------------------------------------------


def test_schema_json_round_trips_and_fingerprints_are_stable() -> None:
    fields: list[tuple[str, DType]] = [("price", Float64), ("tags", Array(String))]
    assert fields_json(fields) == [["price", "Float64"], ["tags", "Array(String)"]]
    assert fields_from_json(fields_json(fields)) == fields
    assert fields_from_json('[["price", "Float64"]]') == [("price", Float64)]
    assert fingerprint(b"price:Float64") == fingerprint(b"price:Float64") != fingerprint(b"price:Float32")


def test_only_features_with_the_same_dtype_survive_a_schema_change() -> None:
    old: list[tuple[str, DType]] = [("price", Float64), ("venue", String), ("qty", Int32)]
    new: list[tuple[str, DType]] = [("price", Float64), ("venue", Bytes), ("signal", String)]
    assert same_features(old, new, ["signal", "venue", "price"]) == ["price"]


def test_rows_are_grouped_by_fingerprint_and_scattered_back() -> None:
    blobs: list[bytes | None] = [b"\x01" + u32(7) + b"a", None, b"\x01" + u32(9), b"\x01\x07", b"\x01" + u32(7)]
    groups = group_by_fingerprint(blobs, 1)
    assert groups == {7: ([0, 4], [blobs[0], blobs[4]]), 9: ([2], [blobs[2]])}  # too short: left out
    values: dict[str, list[Any]] = {"x": [None] * 5}
    scatter(values, groups[7][0], {"x": ["first", "last"]})
    assert values == {"x": ["first", None, None, None, "last"]}


# -- stamped rows (Redis; any key-value store) ---------------------------------------------------------

TS = pa.timestamp("us", tz="UTC")


def _stamped(schema: list[tuple[str, DType]], columns: dict[str, Any], event_us: list[int]) -> list[bytes]:
    table = pa.table({**columns, "event_timestamp": pa.array(event_us, pa.int64()).cast(TS)})
    layout = ViewLayout(schema)
    blobs: list[bytes] = encode(prepare(layout, "v", table, 7), 0, table.num_rows).to_pylist()
    return blobs


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.floats(allow_nan=False),
            st.none() | st.integers(-(2**63), 2**63 - 1),
            st.none() | st.text(max_size=8),
            st.none() | st.booleans(),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_stamped_rows_round_trip(rows: list[tuple[Any, ...]]) -> None:
    schema: list[tuple[str, DType]] = [("f", Float64), ("i", Int64), ("s", String), ("b", Bool)]
    columns = {name: pa.array([r[k] for r in rows], dtype.arrow) for k, (name, dtype) in enumerate(schema)}
    blobs = _stamped(schema, columns, list(range(len(rows))))
    got = decode_view(ViewLayout(schema), [*blobs, None], ["s", "f", "b", "i"], lambda fp: None)
    assert got.event_ts == [*range(len(rows)), None]
    for k, (name, _) in enumerate(schema):
        assert got.values[name] == [*(r[k] for r in rows), None]


def test_stamped_rows_of_older_layouts_decode_by_name_and_dtype() -> None:
    old_schema: list[tuple[str, DType]] = [("price", Float64), ("venue", String)]
    new_schema: list[tuple[str, DType]] = [("price", Float64), ("venue", Bytes), ("signal", String)]
    old, new = ViewLayout(old_schema), ViewLayout(new_schema)
    old_blob = _stamped(old_schema, {"price": [1.5], "venue": ["ICE"]}, [10])[0]
    new_blob = _stamped(new_schema, {"price": [2.5], "venue": [b"NYM"], "signal": ["buy"]}, [20])[0]
    unknown = _stamped([("other", Int64)], {"other": [1]}, [30])[0]
    blobs: list[bytes | None] = [old_blob, new_blob, unknown, new_blob[:19], None]
    resolved = {old.fingerprint: old}
    got = decode_view(new, blobs, ["price", "venue", "signal"], resolved.get)
    assert got.event_ts == [10, 20, None, None, None]  # unknown layout and a truncated blob read as missing
    assert got.values == {
        "price": [1.5, 2.5, None, None, None],
        "venue": [None, b"NYM", None, None, None],  # retyped: the old value means nothing
        "signal": [None, "buy", None, None, None],  # added after the old row
    }


def test_text_entity_keys_python_and_arrow_agree() -> None:
    columns = {"venue": ["ICE", "NYM", "é"], "station_id": [42, -7, 0], "raw": [b"\x00", b"", b"ab"]}
    names = ["venue", "station_id", "raw"]
    from_python = text_entity_keys(names, columns)
    assert from_python == text_entity_keys_arrow(names, pa.table(columns)).to_pylist()
    assert from_python[0] == b"1:\x00" + b"2:42" + b"3:ICE"  # sorted by name: raw, station_id, venue
    with pytest.raises(EntityKeyError):
        text_entity_keys(["venue"], {"venue": [True]})
    with pytest.raises(EntityKeyError):
        text_entity_keys_arrow(["venue"], pa.table({"venue": ["A", None]}))
    with pytest.raises(EntityKeyError):
        text_entity_keys_arrow(["venue"], pa.table({"venue": [1.5]}))
