"""SQL text, table metadata and row encoding of the SQLite online store (see :mod:`.store`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import FeatureView
from ladle.online import columns as colconv
from ladle.online.codec.versioned import RowCodec
from ladle.online.keys import DUMMY_JOIN_KEY, KeyEncoder

CATALOG = "__ladle_tables"
WRITE_CHUNK = 50_000
MAX_IN = 256
# Key lists are padded (with NULLs, which match nothing) to one of a few sizes, so only a handful
# of statements are ever prepared and little padding is looked up.
BUCKETS = [2, 4, 8, *range(16, 257, 16)]
RANGES = {b: tuple(range(b)) for b in BUCKETS}


def table_name(project: str, view: str) -> str:
    """The SQLite table holding one view of one project."""
    return f"{project}:{view}"


def quote(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


_CODECS: dict[tuple[tuple[str, str], ...], RowCodec] = {}


def codec_for(view: FeatureView) -> RowCodec:
    """The row codec of the view's current feature schema (built once per schema)."""
    key = tuple((f.name, f.dtype.name) for f in view.features)
    codec = _CODECS.get(key)
    if codec is None:
        if len(_CODECS) > 1024:
            _CODECS.clear()
        codec = _CODECS[key] = RowCodec([(f.name, f.dtype) for f in view.features])
    return codec


@dataclass
class Table:
    """What this process knows about one view's table: codecs by fingerprint, prepared SQL."""

    name: str
    codecs: dict[int, RowCodec]
    sql: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        q = quote(self.name)
        self.upsert = (
            f"INSERT INTO {q} (__key, __event_ts, __created_ts, __values) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (__key) DO UPDATE SET __event_ts = excluded.__event_ts, "
            "__created_ts = excluded.__created_ts, __values = excluded.__values "
            "WHERE excluded.__event_ts > __event_ts "
            "OR (excluded.__event_ts = __event_ts AND excluded.__created_ts >= __created_ts)"
        )
        self.select_one = f"SELECT __event_ts, __values FROM {q} WHERE __key = ?"

    def select_many(self, bucket: int) -> str:
        """Rows of ``bucket`` keys, one per key in request order (NULLs for missing ones)."""
        sql = self.sql.get(bucket)
        if sql is None:
            values = ", ".join(f"({i}, ?)" for i in range(bucket))
            sql = (
                f"WITH q(i, k) AS (VALUES {values}) SELECT q.i, t.__event_ts, t.__values "
                f"FROM q LEFT JOIN {quote(self.name)} AS t ON t.__key = q.k"
            )
            self.sql[bucket] = sql
        return sql


def encode_rows(view: FeatureView, chunk: pa.Table, codec: RowCodec, encoder: KeyEncoder, now_us: int) -> Iterator[Any]:
    """Statement parameters of one chunk, sorted by key.

    Sorted, SQLite appends B-tree pages in order instead of splitting random ones (several times
    faster on big tables). The sort is stable: rows of one key keep their order, so the last of
    equal timestamps still wins.
    """
    keys = encoder.encode_array({k: key_column(chunk, k) for k in encoder.names})
    columns = [
        keys,
        colconv.timestamps_us(chunk, view.name, now_us, created=False),
        colconv.timestamps_us(chunk, view.name, now_us, created=True),
        codec.encode_array(chunk),
    ]
    if len(keys) > 1:
        order = pc.sort_indices(keys)
        columns = [c.take(order) for c in columns]
    return zip(*(c.to_pylist() for c in columns), strict=True)


def key_column(chunk: pa.Table, name: str) -> pa.Array | pa.ChunkedArray:
    if name == DUMMY_JOIN_KEY and name not in chunk.column_names:
        return pa.array([""] * chunk.num_rows, pa.string())
    return chunk.column(name)


CREATE_CATALOG = (
    f"CREATE TABLE IF NOT EXISTS {CATALOG} (tbl TEXT PRIMARY KEY, project TEXT NOT NULL, "
    "view TEXT NOT NULL, schemas TEXT NOT NULL)"
)


def create_table_sql(name: str) -> str:
    """DDL of one view's table."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(name)} (__key BLOB PRIMARY KEY NOT NULL, "
        "__event_ts INTEGER NOT NULL, __created_ts INTEGER NOT NULL, __values BLOB NOT NULL) WITHOUT ROWID"
    )
