"""SQLite files written by earlier versions (format 1) are converted on open and lose nothing.

The old bytes below are pinned: the code that wrote real files produced them (Feast-serialized keys,
versioned rows); the test builds such a file by hand, then reads it through ``SqliteOnlineStore``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ladle import Array, Entity, FeatureView, Field, FileSource, Float64, Int32, Int64, String, ValueType
from ladle.config import RepoConfig
from ladle.online.base import ReadRequest
from ladle.online.codec.history import fields_json
from ladle.online.codec.stamped import ViewLayout
from ladle.online.sqlite.migrate import entity_keys
from ladle.online.sqlite.store import SqliteOnlineStore, SqliteOnlineStoreConfig
from ladle.types import DType

from .test_online_bytes import DECODED, ROWS, SCHEMA, T1_US, TS

# -- format 1, as earlier versions wrote it ---------------------------------------------------------

OLD_FINGERPRINT = 320935572  # the versioned rows of SCHEMA
OLD_ROWS = [
    "01941621130000000000000000f83f0100000000000000000000400000003f01804a53bbc3170600030000005754490200000000010f"
    "0000000200000000010000000100000061620d0000000100000000000000000000f03f",
    "0194162113570200000000000000000000000000000000000000000000000000000000000000000000000000000000000500000000"
    "0000000000000000",
    "0194162113a901000000000000f87ffbffffff00000000000000000000004000804a53bbc317060000000000000000000000000015"
    "000000020000000000000000000000400000000000000840",
]
# written before 'qty' became Int32 and the other features were added
OLDER_SCHEMA: list[tuple[str, DType]] = [("price", Float64), ("code", String), ("qty", Int64)]
OLDER_FINGERPRINT = 1165160496
OLDER_ROW = "0130f07245000000000000001d400900000000000000030000004f4c44"  # 7.25, "OLD", 9
# (station_id INT64, venue STRING): (42, "ICE"), (7, "N:Y{}"), (-1, ""), (5, "OLD")
_HEAD = "02000000020000000a00000073746174696f6e5f6964020000000500000076656e7565"
OLD_KEYS = [
    _HEAD + "04000000080000002a000000000000000200000003000000494345",
    _HEAD + "0400000008000000070000000000000002000000050000004e3a597b7d",
    _HEAD + "0400000008000000ffffffffffffffff0200000000000000",
    _HEAD + "0400000008000000050000000000000002000000030000004f4c44",
]
# a view keyed by one BYTES join key, with a list holding a null element
TAGS_SCHEMA: list[tuple[str, DType]] = [("tags", Array(String)), ("n", Int32)]
TAGS_FINGERPRINT = 1317328223
TAGS_ROWS = ["015fd5844e0003000000140000000300000001050100000000000000010000006162", "015fd5844e030000000000000000"]
TAGS_KEYS = ["0100000002000000030000007261770100000003000000003aff", "0100000002000000030000007261770100000000000000"]
CREATED = [T1_US, 1_700_000_000_000_000, T1_US, T1_US - 5]

venue = Entity(name="venue", join_keys=["venue"], value_type=ValueType.STRING)
station = Entity(name="station", join_keys=["station_id"], value_type=ValueType.INT64)
raw = Entity(name="raw", join_keys=["raw"], value_type=ValueType.BYTES)
source = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
PRICES = FeatureView(
    name="prices", source=source, entities=[venue, station], schema=[Field(name=n, dtype=d) for n, d in SCHEMA]
)
TAGS = FeatureView(name="tags", source=source, entities=[raw], schema=[Field(name=n, dtype=d) for n, d in TAGS_SCHEMA])
NAMES = [n for n, _ in SCHEMA]


def old_file(path: Path) -> None:
    """An online store file exactly as format-1 code left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE __ladle_tables (tbl TEXT PRIMARY KEY, project TEXT NOT NULL, "
        "view TEXT NOT NULL, schemas TEXT NOT NULL)"
    )
    tables = {
        "p:prices": {OLD_FINGERPRINT: SCHEMA, OLDER_FINGERPRINT: OLDER_SCHEMA},
        "p:tags": {TAGS_FINGERPRINT: TAGS_SCHEMA},
    }
    for name, schemas in tables.items():
        conn.execute(
            f'CREATE TABLE "{name}" (__key BLOB PRIMARY KEY NOT NULL, __event_ts INTEGER NOT NULL, '
            "__created_ts INTEGER NOT NULL, __values BLOB NOT NULL) WITHOUT ROWID"
        )
        catalog = json.dumps({str(fp): fields_json(fields) for fp, fields in schemas.items()})
        conn.execute("INSERT INTO __ladle_tables VALUES (?, 'p', ?, ?)", (name, name[2:], catalog))
    rows = list(zip(OLD_KEYS, [T1_US] * 4, CREATED, [*OLD_ROWS, OLDER_ROW], strict=True))
    rows += list(zip(TAGS_KEYS, [T1_US - 1] * 2, [T1_US] * 2, TAGS_ROWS, strict=True))
    for key, event, created, blob in rows:
        table = "p:prices" if key.startswith(_HEAD) else "p:tags"
        conn.execute(
            f'INSERT INTO "{table}" VALUES (?, ?, ?, ?)', (bytes.fromhex(key), event, created, bytes.fromhex(blob))
        )
    conn.close()


def open_store(root: Path) -> SqliteOnlineStore:
    return SqliteOnlineStore(
        RepoConfig(project="p", online_store=SqliteOnlineStoreConfig(path="online.db"), repo_path=root)
    )


def read_prices(store: SqliteOnlineStore, keys: dict[str, list[Any]]) -> Any:
    return store.read("p", [ReadRequest(PRICES, NAMES, keys)])[0]


def test_old_keys_become_entity_keys() -> None:
    old = [bytes.fromhex(k) for k in OLD_KEYS]
    assert entity_keys(old) == [b"2:423:ICE", b"1:75:N:Y{}", b"2:-10:", b"1:53:OLD"]
    assert entity_keys([bytes.fromhex(k) for k in TAGS_KEYS]) == [b"\x00:\xff", b""]
    assert entity_keys([bytes.fromhex(TAGS_KEYS[0]), old[0]]) == [b"\x00:\xff", b"2:423:ICE"]


def test_an_old_file_reads_identically_after_conversion(tmp_path: Path) -> None:
    old_file(tmp_path / "online.db")
    store = open_store(tmp_path)
    rows = read_prices(store, {"station_id": [42, 7, -1, 5, 99], "venue": ["ICE", "N:Y{}", "", "OLD", "ICE"]})
    assert rows.event_ts == [T1_US] * 4 + [None]
    expected = [*DECODED, [7.25, "OLD", None] + [None] * 7, [None] * 10]  # qty was Int64 then: null
    assert rows.values == {name: [row[i] for row in expected] for i, name in enumerate(NAMES)}
    one = read_prices(store, {"station_id": [42], "venue": ["ICE"]})
    assert one.event_ts == [T1_US] and one.values["levels"] == [[1.0]]
    tags = store.read("p", [ReadRequest(TAGS, ["tags", "n"], {"raw": [b"\x00:\xff", b""]})])[0]
    assert tags.event_ts == [T1_US - 1] * 2
    # the stamped format has no null list elements (nor have Feast's lists): a null string is ""
    assert tags.values == {"tags": [["a", "", "b"], None], "n": [3, None]}


def test_conversion_rewrites_keys_rows_and_catalog_and_keeps_timestamps(tmp_path: Path) -> None:
    old_file(tmp_path / "online.db")
    open_store(tmp_path).ping()
    conn = sqlite3.connect(tmp_path / "online.db")
    stored = {k: (e, c, v) for k, e, c, v in conn.execute('SELECT * FROM "p:prices"')}
    assert sorted(stored) == [b"1:53:OLD", b"1:75:N:Y{}", b"2:-10:", b"2:423:ICE"]
    assert [stored[k][:2] for k in (b"2:423:ICE", b"1:75:N:Y{}", b"2:-10:", b"1:53:OLD")] == [
        (T1_US, c) for c in CREATED
    ]
    assert stored[b"2:423:ICE"][2].hex() == ROWS[0]  # byte for byte what a new write stores
    # (a new write of row 3 keeps the NaN's bits under its null bit; converted, the null slot is zeros)
    assert stored[b"2:-10:"][2].hex() == ROWS[2].replace("f87f", "0000", 1)
    catalog = dict(conn.execute("SELECT tbl, format FROM __ladle_tables"))
    assert catalog == {"p:prices": 2, "p:tags": 2}
    schemas = json.loads(conn.execute("SELECT schemas FROM __ladle_tables WHERE tbl = 'p:prices'").fetchone()[0])
    assert schemas == {
        str(ViewLayout(SCHEMA).fingerprint): fields_json(SCHEMA),
        str(ViewLayout(OLDER_SCHEMA).fingerprint): fields_json(OLDER_SCHEMA),
    }
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")] == [
        "__ladle_tables",
        "p:prices",
        "p:tags",
    ]


def test_newest_wins_against_converted_rows(tmp_path: Path) -> None:
    old_file(tmp_path / "online.db")
    store = open_store(tmp_path)

    def write(price: float, event: int, created: int) -> int:
        table = pa.table(
            {
                "station_id": [7],
                "venue": ["N:Y{}"],
                "price": [price],
                "event_timestamp": pa.array([event], pa.int64()).cast(TS),
                "created_timestamp": pa.array([created], pa.int64()).cast(TS),
            }
        )
        return store.write("p", PRICES, table)

    assert write(1.0, T1_US - 1, T1_US) == 0  # older event
    assert write(2.0, T1_US, CREATED[1] - 1) == 0  # same event, older created timestamp (kept by the conversion)
    assert read_prices(store, {"station_id": [7], "venue": ["N:Y{}"]}).values["price"] == [None]
    assert write(3.0, T1_US, CREATED[1]) == 1
    assert read_prices(store, {"station_id": [7], "venue": ["N:Y{}"]}).values["price"] == [3.0]


def test_conversion_runs_once_and_concurrent_openers_agree(tmp_path: Path) -> None:
    old_file(tmp_path / "online.db")
    reader = sqlite3.connect(tmp_path / "online.db", isolation_level=None)
    reader.execute("BEGIN")
    before = reader.execute('SELECT count(*), min(__key) FROM "p:prices"').fetchone()
    results: list[Any] = []

    def open_and_read() -> None:
        store = open_store(tmp_path)
        results.append(read_prices(store, {"station_id": [42], "venue": ["ICE"]}).values["price"])
        store.close()

    threads = [threading.Thread(target=open_and_read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # a reader inside a transaction begun before the conversion still sees the old table, whole
    assert reader.execute('SELECT count(*), min(__key) FROM "p:prices"').fetchone() == before
    reader.execute("COMMIT")
    assert results == [[1.5]] * 3
    assert reader.execute('SELECT count(*) FROM "p:prices"').fetchone() == (4,)
    again = open_store(tmp_path)
    assert read_prices(again, {"station_id": [5], "venue": ["OLD"]}).values["price"] == [7.25]


@pytest.mark.parametrize("blob", ["02", "0194162113", "01deadbeef00"])
def test_rows_no_schema_describes_stay_unreadable(tmp_path: Path, blob: str) -> None:
    old_file(tmp_path / "online.db")
    conn = sqlite3.connect(tmp_path / "online.db")
    conn.execute(
        'UPDATE "p:prices" SET __values = ? WHERE __key = ?', (bytes.fromhex(blob), bytes.fromhex(OLD_KEYS[3]))
    )
    conn.commit()
    conn.close()
    rows = read_prices(open_store(tmp_path), {"station_id": [42, 5], "venue": ["ICE", "OLD"]})
    assert rows.event_ts == [T1_US, None]
    assert rows.values["price"] == [1.5, None]


def test_an_earlier_version_still_running_fails_instead_of_mixing_formats(tmp_path: Path) -> None:
    old_file(tmp_path / "online.db")
    open_store(tmp_path).ping()
    conn = sqlite3.connect(tmp_path / "online.db")
    old_upsert = (
        'INSERT INTO "p:prices" (__key, __event_ts, __created_ts, __values) VALUES (?, ?, ?, ?) '
        "ON CONFLICT (__key) DO UPDATE SET __values = excluded.__values"
    )
    with pytest.raises(sqlite3.OperationalError, match="__values"):
        conn.execute(old_upsert, (bytes.fromhex(OLD_KEYS[0]), T1_US, T1_US, bytes.fromhex(OLD_ROWS[0])))
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("INSERT INTO __ladle_tables VALUES ('p:new', 'p', 'new', '{}')")
    with pytest.raises(sqlite3.OperationalError, match="__values"):
        conn.execute('SELECT __event_ts, __values FROM "p:prices"')
