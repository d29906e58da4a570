"""The bytes both online stores keep, pinned: existing SQLite files and Redis keys must stay readable.

Every constant here was produced by the code that wrote real data; a change to any of them is a
change of the on-disk / in-Redis format and needs a migration, not a test update.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from ladle import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp, ValueType
from ladle.online.codec.lists import decode_list, encode_list
from ladle.online.codec.stamped import ViewLayout, encode, prepare
from ladle.online.codec.stamped_decode import decode_view
from ladle.online.codec.versioned import RowCodec
from ladle.online.keys import KeyEncoder, text_entity_keys, text_entity_keys_arrow
from ladle.online.redis.keys import row_keys_arrow, view_id
from ladle.online.redis.resp import encode_resp
from ladle.types import DType

T1 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T1_US = 1714979289123456
TS = pa.timestamp("us", tz="UTC")
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
TABLE = pa.table(
    {
        "price": [1.5, None, float("nan")],
        "code": ["WTI", None, ""],
        "qty": pa.array([1, None, -5], pa.int32()),
        "big": [2**62, 0, None],
        "ratio": pa.array([0.5, None, 2.0], pa.float32()),
        "ok": [True, False, None],
        "at": pa.array([T1, None, T1], TS),
        "raw": [b"\x00\x01", b"", None],
        "tags": [["a", "b"], [], None],
        "levels": [[1.0], None, [2.0, 3.0]],
        "event_timestamp": pa.array([T1, T1, T1], TS),
        "created_timestamp": pa.array([T1, None, T1], TS),
    }
)
NOW_US = 1_700_000_000_000_000

# -- SQLite: row blobs (__values), list values, entity keys (__key) -------------------------------

SQLITE_FINGERPRINT = 320935572
SQLITE_ROWS = [
    "01941621130000000000000000f83f0100000000000000000000400000003f01804a53bbc3170600030000005754490200000000010f"
    "0000000200000000010000000100000061620d0000000100000000000000000000f03f",
    "0194162113570200000000000000000000000000000000000000000000000000000000000000000000000000000000000500000000"
    "0000000000000000",
    "0194162113a901000000000000f87ffbffffff00000000000000000000004000804a53bbc317060000000000000000000000000015"
    "000000020000000000000000000000400000000000000840",
]
SQLITE_DECODED: list[list[Any]] = [
    [1.5, "WTI", 1, 2**62, 0.5, True, T1, b"\x00\x01", ["a", "b"], [1.0]],
    [None, None, None, 0, None, False, None, b"", [], None],
    [None, "", -5, None, 2.0, None, T1, None, None, [2.0, 3.0]],
]


def test_sqlite_row_blobs_are_pinned() -> None:
    codec = RowCodec(SCHEMA)
    assert codec.fingerprint == SQLITE_FINGERPRINT
    assert [b.hex() for b in codec.encode(TABLE)] == SQLITE_ROWS


def test_pinned_sqlite_row_blobs_decode() -> None:
    codec = RowCodec(SCHEMA)
    blobs = [bytes.fromhex(h) for h in SQLITE_ROWS]
    assert [codec.decode_one(b) for b in blobs] == SQLITE_DECODED
    assert codec.decode_columns(blobs, [0, 8, 6]) == [[row[i] for row in SQLITE_DECODED] for i in (0, 8, 6)]
    assert codec.picker([0, 3])(blobs[0]) == [1.5, 2**62]


def test_sqlite_list_values_are_pinned() -> None:
    strings = "0300000001050100000000000000010000006162"
    ints = "02000000010101000000000000000000000000000000"
    assert encode_list(["a", None, "b"], String) == bytes.fromhex(strings)
    assert encode_list([1, None], Int64) == bytes.fromhex(ints)
    assert decode_list(bytes.fromhex(strings), String) == ["a", None, "b"]
    assert decode_list(bytes.fromhex(ints), Int64) == [1, None]


def test_sqlite_entity_keys_are_pinned() -> None:
    enc = KeyEncoder({"venue": ValueType.STRING, "station_id": ValueType.INT64})
    expected = (
        "02000000"
        "020000000a00000073746174696f6e5f6964"
        "020000000500000076656e7565"
        "04000000080000002a00000000000000"
        "0200000003000000494345"
    )
    assert enc.encode_one([42, "ICE"]).hex() == expected
    assert enc.encode_array({"venue": pa.array(["ICE"]), "station_id": pa.array([42])}).to_pylist()[0].hex() == expected


# -- Redis: row values, keys ------------------------------------------------------------------------

REDIS_FINGERPRINT = 2524309033
REDIS_ROWS = [
    "804a53bbc3170600804a53bbc317060029e675960000000000000000f83f0100000000000000000000400000003f01804a53bbc31706"
    "0003000000020000000e0000000800000057544900010200000001000000010000006162000000000000f03f",
    "804a53bbc317060000401e18240a060029e67596570200000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000040000000000000000000000",
    "804a53bbc3170600804a53bbc317060029e67596a901000000000000f87ffbffffff00000000000000000000004000804a53bbc31706"
    "00000000000000000004000000100000000000000000000000000000400000000000000840",
]


def test_redis_row_values_are_pinned() -> None:
    layout = ViewLayout(SCHEMA)
    assert layout.fingerprint == REDIS_FINGERPRINT
    prepared = prepare(layout, "prices", TABLE, NOW_US)
    blobs = encode(prepared, 0, 3).to_pylist()
    assert [b.hex() for b in blobs] == REDIS_ROWS
    data, offsets = encode_resp(prepared, 0, 3)
    assert bytes(data[offsets[0] : offsets[-1]]) == b"".join(b"$%d\r\n%b\r\n" % (len(b), b) for b in blobs)


def test_redis_fixed_width_values_are_framed_in_place() -> None:
    layout = ViewLayout([("a", Float64), ("b", Bool)])
    assert layout.fingerprint == 1481835495
    table = pa.table({"a": [1.0], "b": [True], "event_timestamp": pa.array([T1], TS)})
    data, _ = encode_resp(prepare(layout, "prices", table, 5), 0, 1)
    assert bytes(data).hex() == "2433300d0a804a53bbc31706000500000000000000e703535800000000000000f03f010d0a"


def test_pinned_redis_row_values_decode() -> None:
    layout = ViewLayout(SCHEMA)
    blobs: list[bytes | None] = [bytes.fromhex(h) for h in REDIS_ROWS]
    names = [n for n, _ in SCHEMA]
    rows = decode_view(layout, blobs, names, lambda fp: None)
    assert rows.event_ts == [T1_US] * 3
    expected = [
        [1.5, "WTI", 1, 2**62, 0.5, True, T1, b"\x00\x01", ["a", "b"], [1.0]],
        [None, None, None, 0, None, False, None, b"", [], None],
        [None, "", -5, None, 2.0, None, T1, None, None, [2.0, 3.0]],
    ]
    assert rows.values == {name: [row[i] for row in expected] for i, name in enumerate(names)}
    fixed = ViewLayout([("a", Float64), ("b", Bool)])
    blob = bytes.fromhex("804a53bbc31706000500000000000000e703535800000000000000f03f01")
    assert decode_view(fixed, [blob, None], ["b", "a"], lambda fp: None).values == {"b": [True, None], "a": [1.0, None]}


def test_redis_keys_are_pinned() -> None:
    assert view_id("prices") == b"e123508ef704"
    table = pa.table({"venue": ["ICE", "NYM"], "station_id": [42, 7]})
    assert text_entity_keys_arrow(["venue", "station_id"], table).to_pylist() == [b"2:423:ICE", b"1:73:NYM"]
    assert text_entity_keys(["venue", "station_id"], {"venue": ["ICE", "NYM"], "station_id": [42, 7]}) == [
        b"2:423:ICE",
        b"1:73:NYM",
    ]
    entities = text_entity_keys_arrow(["venue"], table)
    assert row_keys_arrow("proj", view_id("prices"), entities).to_pylist() == [
        b"{proj:ICE}:e123508ef704",
        b"{proj:NYM}:e123508ef704",
    ]
