"""The bytes every online store keeps, pinned: one row format and one entity key, in Redis and SQLite.

Every constant here was produced by the code that wrote real data; a change to any of them is a
change of the on-disk / in-Redis format and needs a migration, not a test update. The bytes SQLite
files held before (format 1) are pinned as migration input in ``test_sqlite_migrate.py``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ladle import (
    Array,
    Bool,
    Bytes,
    Entity,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
    ValueType,
)
from ladle.config import RepoConfig
from ladle.online.codec.stamped import ViewLayout, encode, prepare
from ladle.online.codec.stamped_decode import decode_view
from ladle.online.keys import text_entity_keys, text_entity_keys_arrow
from ladle.online.redis.keys import row_keys_arrow, view_id
from ladle.online.redis.resp import encode_resp
from ladle.online.sqlite.store import SqliteOnlineStore, SqliteOnlineStoreConfig
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

# -- rows: the stamped format every store writes (Redis values, SQLite __row) --------------------

ROW_FINGERPRINT = 2524309033
ROWS = [
    "804a53bbc3170600804a53bbc317060029e675960000000000000000f83f0100000000000000000000400000003f01804a53bbc31706"
    "0003000000020000000e0000000800000057544900010200000001000000010000006162000000000000f03f",
    "804a53bbc317060000401e18240a060029e67596570200000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000040000000000000000000000",
    "804a53bbc3170600804a53bbc317060029e67596a901000000000000f87ffbffffff00000000000000000000004000804a53bbc31706"
    "00000000000000000004000000100000000000000000000000000000400000000000000840",
]
DECODED: list[list[Any]] = [
    [1.5, "WTI", 1, 2**62, 0.5, True, T1, b"\x00\x01", ["a", "b"], [1.0]],
    [None, None, None, 0, None, False, None, b"", [], None],
    [None, "", -5, None, 2.0, None, T1, None, None, [2.0, 3.0]],
]


def test_row_values_are_pinned() -> None:
    layout = ViewLayout(SCHEMA)
    assert layout.fingerprint == ROW_FINGERPRINT
    prepared = prepare(layout, "prices", TABLE, NOW_US)
    blobs = encode(prepared, 0, 3).to_pylist()
    assert [b.hex() for b in blobs] == ROWS
    data, offsets = encode_resp(prepared, 0, 3)
    assert bytes(data[offsets[0] : offsets[-1]]) == b"".join(b"$%d\r\n%b\r\n" % (len(b), b) for b in blobs)


def test_redis_fixed_width_values_are_framed_in_place() -> None:
    layout = ViewLayout([("a", Float64), ("b", Bool)])
    assert layout.fingerprint == 1481835495
    table = pa.table({"a": [1.0], "b": [True], "event_timestamp": pa.array([T1], TS)})
    data, _ = encode_resp(prepare(layout, "prices", table, 5), 0, 1)
    assert bytes(data).hex() == "2433300d0a804a53bbc31706000500000000000000e703535800000000000000f03f010d0a"


def test_pinned_row_values_decode() -> None:
    layout = ViewLayout(SCHEMA)
    blobs: list[bytes | None] = [bytes.fromhex(h) for h in ROWS]
    names = [n for n, _ in SCHEMA]
    rows = decode_view(layout, blobs, names, lambda fp: None)
    assert rows.event_ts == [T1_US] * 3
    assert rows.values == {name: [row[i] for row in DECODED] for i, name in enumerate(names)}
    fixed = ViewLayout([("a", Float64), ("b", Bool)])
    blob = bytes.fromhex("804a53bbc31706000500000000000000e703535800000000000000f03f01")
    assert decode_view(fixed, [blob, None], ["b", "a"], lambda fp: None).values == {"b": [True, None], "a": [1.0, None]}


def test_entity_keys_and_redis_keys_are_pinned() -> None:
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


# -- the SQLite file: the same rows and entity keys ---------------------------------------------------

venue = Entity(name="venue", join_keys=["venue"], value_type=ValueType.STRING)
station = Entity(name="station", join_keys=["station_id"], value_type=ValueType.INT64)
PRICES = FeatureView(
    name="prices",
    source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
    entities=[venue, station],
    schema=[Field(name=name, dtype=dtype) for name, dtype in SCHEMA],
)


def test_sqlite_stores_the_same_rows_under_the_same_entity_keys(tmp_path: Path) -> None:
    store = SqliteOnlineStore(
        RepoConfig(project="p", online_store=SqliteOnlineStoreConfig(path="online.db"), repo_path=tmp_path)
    )
    keys = {"venue": ["ICE", "N:Y", "é"], "station_id": [42, 7, -1]}
    assert (
        store.write(
            "p",
            PRICES,
            TABLE.append_column("venue", pa.array(keys["venue"])).append_column(
                "station_id", pa.array(keys["station_id"])
            ),
        )
        == 3
    )
    store.close()
    with sqlite3.connect(tmp_path / "online.db") as conn:
        stored = dict(conn.execute('SELECT __key, __row FROM "p:prices"').fetchall())
        fmt = conn.execute("SELECT format FROM __ladle_tables").fetchall()
    # join keys sorted by name: station_id, then venue
    assert sorted(stored) == [b"1:73:N:Y", b"2:-12:\xc3\xa9", b"2:423:ICE"]
    assert stored[b"2:423:ICE"].hex() == ROWS[0]
    assert stored[b"2:-12:\xc3\xa9"].hex() == ROWS[2]
    # the second row has no created timestamp: the store puts the write time there (bytes 8-16)
    second = stored[b"1:73:N:Y"].hex()
    assert second[:16] == ROWS[1][:16] and second[32:] == ROWS[1][32:]
    assert fmt == [(2,)]
