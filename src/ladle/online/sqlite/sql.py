"""SQL text, table metadata and row encoding of the SQLite online store (see :mod:`.store`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import FeatureView
from ladle.online.arrays import int64_array
from ladle.online.codec.history import fields_json
from ladle.online.codec.stamped import ViewLayout, encode, prepare
from ladle.online.keys import entity_join_keys, text_entity_keys_arrow

CATALOG = "__ladle_tables"
#: The table format this code writes, recorded per table in the catalog's ``format`` column:
#: 1 = the versioned rows and Feast-serialized keys of earlier versions (converted by :mod:`.migrate`),
#: 2 = stamped rows (:mod:`ladle.online.codec.stamped`) keyed by the entity key of :mod:`ladle.online.keys`.
FORMAT = 2
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


def schemas_json(layouts: Iterable[ViewLayout]) -> str:
    """The catalog's ``schemas`` text: every layout's fields by fingerprint."""
    return json.dumps({str(layout.fingerprint): fields_json(layout.fields) for layout in layouts})


@dataclass
class Table:
    """What this process knows about one view's table: row layouts by fingerprint, prepared SQL."""

    name: str
    layouts: dict[int, ViewLayout]
    sql: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        q = quote(self.name)
        self.upsert = (
            f"INSERT INTO {q} (__key, __event_ts, __created_ts, __row) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (__key) DO UPDATE SET __event_ts = excluded.__event_ts, "
            "__created_ts = excluded.__created_ts, __row = excluded.__row "
            "WHERE excluded.__event_ts > __event_ts "
            "OR (excluded.__event_ts = __event_ts AND excluded.__created_ts >= __created_ts)"
        )
        self.select_one = f"SELECT __row FROM {q} WHERE __key = ?"

    def select_many(self, bucket: int) -> str:
        """Rows of ``bucket`` keys, one per key in request order (NULLs for missing ones)."""
        sql = self.sql.get(bucket)
        if sql is None:
            values = ", ".join(f"({i}, ?)" for i in range(bucket))
            sql = (
                f"WITH q(i, k) AS (VALUES {values}) SELECT q.i, t.__row "
                f"FROM q LEFT JOIN {quote(self.name)} AS t ON t.__key = q.k"
            )
            self.sql[bucket] = sql
        return sql


def encode_rows(view: FeatureView, chunk: pa.Table, layout: ViewLayout, now_us: int) -> Iterator[Any]:
    """Statement parameters of one chunk, sorted by key.

    Sorted, SQLite appends B-tree pages in order instead of splitting random ones (several times
    faster on big tables). The sort is stable: rows of one key keep their order, so the last of
    equal timestamps still wins. The timestamps go both into the row (the stamped format, one for
    every store) and into their own columns, which the upsert's ``WHERE`` compares.
    """
    keys = text_entity_keys_arrow(entity_join_keys(view), chunk)
    prepared = prepare(layout, view.name, chunk, now_us)
    columns = [
        keys,
        int64_array(prepared.event_ts),  # not pa.array: it imports pandas
        int64_array(prepared.created_ts),
        encode(prepared, 0, chunk.num_rows),
    ]
    if len(keys) > 1:
        order = pc.sort_indices(keys)
        columns = [c.take(order) for c in columns]
    return zip(*(c.to_pylist() for c in columns), strict=True)


CREATE_CATALOG = (
    f"CREATE TABLE IF NOT EXISTS {CATALOG} (tbl TEXT PRIMARY KEY, project TEXT NOT NULL, "
    "view TEXT NOT NULL, schemas TEXT NOT NULL, format INTEGER NOT NULL DEFAULT 1)"
)


def create_table_sql(name: str) -> str:
    """DDL of one view's table."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(name)} (__key BLOB PRIMARY KEY NOT NULL, "
        "__event_ts INTEGER NOT NULL, __created_ts INTEGER NOT NULL, __row BLOB NOT NULL) WITHOUT ROWID"
    )
