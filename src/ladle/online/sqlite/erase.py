"""Erasing one entity's rows from a view's SQLite table (``ladle erase``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from ladle.definitions import FeatureView
from ladle.online.keys import entity_join_keys, entity_key_matcher, exact_entity_key
from ladle.online.sqlite.sql import quote

_CHUNK = 500


def erase_entity(
    conn: sqlite3.Connection, table: str, view: FeatureView, keys: Mapping[str, Any], dry_run: bool
) -> int:
    """Delete (or count) the rows of ``table`` whose entity has ``keys``; runs inside the caller's transaction.

    A full key is one indexed lookup; a partial key (some of a compound view's join keys) scans the keys.
    """
    join_keys = entity_join_keys(view)
    q = quote(table)
    exact = exact_entity_key(join_keys, keys)
    if exact is not None:
        found = [exact] if conn.execute(f"SELECT 1 FROM {q} WHERE __key = ?", (exact,)).fetchone() else []
    else:
        match = entity_key_matcher(join_keys, keys)
        found = [bytes(k) for (k,) in conn.execute(f"SELECT __key FROM {q}") if match(bytes(k))]
    if not dry_run:
        for start in range(0, len(found), _CHUNK):
            chunk = found[start : start + _CHUNK]
            conn.execute(f"DELETE FROM {q} WHERE __key IN ({', '.join('?' * len(chunk))})", chunk)
    return len(found)
