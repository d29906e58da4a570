"""Shared codec pieces: entity keys (both forms), list values, versioned and stamped rows, schema history."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladle import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp, ValueType
from ladle.errors import EntityKeyError, SchemaMismatchError
from ladle.online.codec.history import (
    fields_from_json,
    fields_json,
    fingerprint,
    group_by_fingerprint,
    same_features,
    scatter,
)
from ladle.online.codec.lists import decode_list, encode_list, encode_list_column
from ladle.online.codec.stamped import ViewLayout, encode, prepare
from ladle.online.codec.stamped_decode import decode_view
from ladle.online.codec.versioned import FINGERPRINT_AT, RowCodec
from ladle.online.keys import KeyEncoder, text_entity_keys, text_entity_keys_arrow
from ladle.types import DType


def u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


# -- keys ----------------------------------------------------------------------------------------------


def test_single_string_key_is_feast_v3() -> None:
    key = KeyEncoder({"commodity_code": ValueType.STRING}).encode_one(["WTI"])
    assert key == u32(1) + u32(2, 14) + b"commodity_code" + u32(2, 3) + b"WTI"


def test_composite_key_is_sorted_by_name_and_typed() -> None:
    enc = KeyEncoder({"venue_id": ValueType.INT64, "commodity_code": ValueType.STRING})
    key = enc.encode({"venue_id": [7], "commodity_code": ["WTI"]})[0]
    expected = (
        u32(2)
        + u32(2, 14) + b"commodity_code"
        + u32(2, 8) + b"venue_id"
        + u32(2, 3) + b"WTI"
        + u32(4, 8) + struct.pack("<q", 7)
    )  # fmt: skip
    assert key == expected


def test_int_and_string_one_differ() -> None:
    as_int = KeyEncoder({"id": ValueType.INT64}).encode_one([1])
    as_str = KeyEncoder({"id": ValueType.STRING}).encode_one(["1"])
    as_int32 = KeyEncoder({"id": ValueType.INT32}).encode_one([1])
    assert len({as_int, as_str, as_int32}) == 3
    assert as_int32.endswith(u32(3, 4) + struct.pack("<i", 1))


@pytest.mark.parametrize("n", [1, 63, 64, 500])
def test_python_and_arrow_paths_agree(n: int) -> None:
    enc = KeyEncoder({"code": ValueType.STRING, "venue": ValueType.INT32, "raw": ValueType.BYTES})
    codes = [f"C{i}é" for i in range(n)]
    venues = [i - n // 2 for i in range(n)]
    raws = [bytes([i % 256]) * (i % 5) for i in range(n)]
    # encode_one takes values in sorted key-name order: code, raw, venue
    one_by_one = [enc.encode_one([c, r, v]) for c, v, r in zip(codes, venues, raws, strict=True)]
    assert enc.encode({"code": codes, "venue": venues, "raw": raws}) == one_by_one
    arrow = {
        "code": pa.chunked_array([codes[: n // 2], codes[n // 2 :]], pa.string()),
        "venue": pa.array(venues),
        "raw": pa.array(raws),
    }
    assert enc.encode(arrow) == one_by_one


def test_sliced_arrow_columns() -> None:
    enc = KeyEncoder({"code": ValueType.STRING})
    arr = pa.array([f"K{i}" for i in range(200)]).slice(50, 100)
    assert enc.encode({"code": arr}) == [enc.encode_one([f"K{i}"]) for i in range(50, 150)]


@pytest.mark.parametrize(
    ("types", "column"),
    [
        ({"id": ValueType.INT64}, ["x"] * 3),
        ({"id": ValueType.INT64}, pa.array(["x"] * 100)),
        ({"id": ValueType.STRING}, [1, 2]),
        ({"id": ValueType.STRING}, pa.array([1] * 100)),
        ({"id": ValueType.STRING}, pa.array(["a", None] * 50)),
        ({"id": ValueType.INT32}, [2**40]),
        ({"id": ValueType.INT32}, pa.array([2**40] * 100)),
    ],
)
def test_bad_key_values(types: dict[str, ValueType], column: Any) -> None:
    with pytest.raises(EntityKeyError):
        KeyEncoder(types).encode({"id": column})


def test_missing_key_column_and_bad_key_type() -> None:
    with pytest.raises(EntityKeyError):
        KeyEncoder({"id": ValueType.STRING}).encode({"other": ["a"]})
    with pytest.raises(EntityKeyError):
        KeyEncoder({"id": ValueType.DOUBLE})


# -- list values ------------------------------------------------------------------------------------

T1 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
LISTS: list[tuple[DType, list[Any]]] = [
    (Int32, [1, -(2**31), None, 2**31 - 1]),
    (Int64, [2**63 - 1, None]),
    (Float32, [1.5, None, -0.25]),
    (Float64, [math.pi, float("inf"), None]),
    (Bool, [True, None, False]),
    (String, ["a", "", None, "ß"]),
    (Bytes, [b"\x00", None, b""]),
    (UnixTimestamp, [T1, None]),
]


@pytest.mark.parametrize(("element", "value"), LISTS, ids=[d.name for d, _ in LISTS])
def test_list_round_trip(element: DType, value: list[Any]) -> None:
    for v in (value, [x for x in value if x is not None], [], None):
        assert decode_list(encode_list(v, element), element) == v


@pytest.mark.parametrize(("element", "value"), LISTS, ids=[d.name for d, _ in LISTS])
def test_list_column_matches_single_values(element: DType, value: list[Any]) -> None:
    clean = [x for x in value if x is not None]
    rows = [clean, None, [], clean[:1], value]
    column = pa.array(rows * 3, pa.list_(element.arrow)).slice(2, 10)
    encoded = encode_list_column(column, element).to_pylist()
    assert encoded == [encode_list(v, element) for v in column.to_pylist()]
    assert [decode_list(b, element) for b in encoded] == column.to_pylist()


# -- rows ---------------------------------------------------------------------------------------------

SCHEMA: list[tuple[str, DType]] = [
    ("price", Float64),
    ("code", String),
    ("qty", Int32),
    ("big", Int64),
    ("ratio", Float32),
    ("ok", Bool),
    ("at", UnixTimestamp),
    ("raw", Bytes),
    ("tags", Array(String)),
    ("levels", Array(Float64)),
]


def test_row_codec_round_trip_and_paths_agree() -> None:
    codec = RowCodec(SCHEMA)
    table = pa.table(
        {
            "price": [1.5, None, float("nan")],
            "code": ["WTI", None, ""],
            "qty": pa.array([1, None, -5], pa.int32()),
            "big": [2**62, 0, None],
            "ratio": pa.array([0.5, None, 2.0], pa.float32()),
            "ok": [True, False, None],
            "at": pa.array([T1, None, T1], pa.timestamp("us", tz="UTC")),
            "raw": [b"\x00\x01", b"", None],
            "tags": [["a", "b"], [], None],
            "levels": [[1.0], None, [2.0, 3.0]],
        }
    )
    expected = [
        [1.5, "WTI", 1, 2**62, 0.5, True, T1, b"\x00\x01", ["a", "b"], [1.0]],
        [None, None, None, 0, None, False, None, b"", [], None],
        [None, "", -5, None, 2.0, None, T1, None, None, [2.0, 3.0]],  # NaN is stored as null
    ]
    blobs = codec.encode(table)
    assert [codec.decode_one(b) for b in blobs] == expected
    wanted = [9, 0, 1]
    columns = codec.decode_columns(blobs, wanted)
    assert columns == [[row[i] for row in expected] for i in wanted]


def test_row_codec_missing_columns_are_null_and_other_schemas_do_not_decode() -> None:
    codec = RowCodec(SCHEMA[:3])
    blob = codec.encode(pa.table({"price": [2.0]}))[0]
    assert codec.decode_one(blob) == [2.0, None, None]
    other = RowCodec([*SCHEMA[:3], ("extra", Int64)])
    assert other.fingerprint != codec.fingerprint
    assert other.decode_one(blob) is None
    assert other.decode_columns([blob], [0]) is None
    assert int.from_bytes(blob[FINGERPRINT_AT : FINGERPRINT_AT + 4], "little") == codec.fingerprint


def test_row_codec_rejects_uncastable_columns() -> None:
    with pytest.raises(SchemaMismatchError):
        RowCodec([("qty", Int64)]).encode(pa.table({"qty": ["many"]}))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.floats(allow_nan=False),
            st.none() | st.integers(-(2**63), 2**63 - 1),
            st.none() | st.text(max_size=8),
            st.none() | st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_row_codec_property(rows: list[tuple[Any, ...]]) -> None:
    schema: list[tuple[str, DType]] = [("f", Float64), ("i", Int64), ("s", String), ("l", Array(Int32))]
    codec = RowCodec(schema)
    table = pa.table({name: pa.array([r[k] for r in rows], dtype.arrow) for k, (name, dtype) in enumerate(schema)})
    blobs = codec.encode(table)
    assert [codec.decode_one(b) for b in blobs] == [list(r) for r in rows]
    assert codec.decode_columns(blobs, [0, 1, 2, 3]) == [[r[k] for r in rows] for k in range(4)]


def test_key_cache_gives_the_same_keys_and_still_rejects_bad_values() -> None:
    enc = KeyEncoder({"code": ValueType.STRING})
    cold = enc.encode({"code": ["A", "B"]})
    warm = enc.encode({"code": ["B", "A", "A"]})
    assert warm == [cold[1], cold[0], cold[0]]
    assert warm == [enc.encode_one([v]) for v in ["B", "A", "A"]]
    with pytest.raises(EntityKeyError):
        enc.encode({"code": ["A", 1]})
    with pytest.raises(EntityKeyError):
        enc.encode({"code": [["A"]]})
    raw = KeyEncoder({"code": ValueType.BYTES})
    assert raw.encode({"code": [b"A"]}) != enc.encode({"code": ["A"]})
    with pytest.raises(EntityKeyError):
        raw.encode({"code": ["A"]})


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
