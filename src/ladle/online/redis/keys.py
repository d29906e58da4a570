"""Redis key layout: one string key per (project, entity, view), hash-tagged on project + entity.

::

    {<project>:<entity>}:<view id>        a row (value: a stamped row, ladle.online.codec.stamped)
    {<project>:}:_meta                    hash: view:<id> → view name, layout:<fp> → feature layout

``<view id>`` is the first 12 hex digits of BLAKE2b(view name); the ``_meta`` hash records which name
owns an id so a collision is detected instead of mixing two views. ``<entity>`` is the join key value
(UTF-8 text, decimal integer or raw bytes); with several join keys, sorted by name, each is written
``<byte length>:<bytes>``. The hash tag (between ``{`` and the first ``}``) puts every view of one
entity in one Redis Cluster slot. See docs/redis.md for the reasons.

Builders here are vectorized over Arrow arrays for writes and use plain loops for the (small) key
lists of online reads, where a loop beats Arrow's per-call overhead. Framing keys for the wire is
:mod:`.resp`'s job.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ladle.errors import EntityKeyError
from ladle.online.keys import arrow_key_type, key_array
from ladle.types import ValueType

VIEW_ID_HEX = 12
META_SUFFIX = b"_meta"


def view_id(view_name: str) -> bytes:
    """The short, stable id of a view inside keys (12 hex digits of BLAKE2b of its name)."""
    return hashlib.blake2b(view_name.encode(), digest_size=VIEW_ID_HEX // 2).hexdigest().encode()


def key_prefix(project: str) -> bytes:
    """``{<project>:``, the start of every key of a project."""
    return b"{" + project.encode() + b":"


def key_suffix(vid: bytes) -> bytes:
    """``}:<view id>``, the end of every row key of a view."""
    return b"}:" + vid


def meta_key(project: str) -> bytes:
    """The project's ``_meta`` hash (view ids → names, layout fingerprints → layouts)."""
    return key_prefix(project) + b"}:" + META_SUFFIX


def view_pattern(project: str, vid: bytes) -> bytes:
    """SCAN pattern of one view's rows (fixed-length ids make the suffix unambiguous)."""
    return key_prefix(project) + b"*" + key_suffix(vid)


def project_pattern(project: str) -> bytes:
    """SCAN pattern of every key of a project (``:`` cannot occur in project names)."""
    return key_prefix(project) + b"*"


# -- entity keys from Python values (reads) ---------------------------------------------------


def _value_bytes(join_key: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool) or value is None:
        raise EntityKeyError(f"join key '{join_key}': {value!r} is not a valid key value (str, int or bytes)")
    try:
        return str(operator.index(value)).encode()
    except TypeError:
        raise EntityKeyError(
            f"join key '{join_key}': {type(value).__name__} {value!r} is not a valid key value (str, int or bytes)"
        ) from None


def entity_keys_py(join_keys: Sequence[str], keys: Mapping[str, Sequence[Any]]) -> list[bytes]:
    """Entity key bytes for N entities given as Python values per join key."""
    names = sorted(join_keys)
    missing = [n for n in names if n not in keys]
    if missing:
        raise EntityKeyError(f"missing join key(s) {missing}; the view needs {names}")
    if len(names) == 1:
        name = names[0]
        try:  # the common case, string keys, without a call per value
            return [v.encode() for v in keys[name]]
        except AttributeError:
            return [_value_bytes(name, v) for v in keys[name]]
    columns = [keys[n] for n in names]
    if len({len(c) for c in columns}) > 1:
        raise EntityKeyError(f"join key columns {names} have different lengths")
    out = []
    for values in zip(*columns, strict=True):
        parts = [_value_bytes(n, v) for n, v in zip(names, values, strict=True)]
        out.append(b"".join(b"%d:%b" % (len(p), p) for p in parts))
    return out


def row_keys_py(project: str, vid: bytes, entities: Sequence[bytes]) -> list[bytes]:
    """Full row keys of one view for encoded entities."""
    pre, suf = key_prefix(project), key_suffix(vid)
    return [pre + e + suf for e in entities]


# -- entity keys from Arrow columns (writes) -------------------------------------------------


def _component(name: str, column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One join key's part of the entity: an integer in decimal, text as UTF-8, bytes as they are."""
    array = key_array(name, column)
    if arrow_key_type(name, array.type) == ValueType.INT64:
        array = pc.cast(array, pa.string())
    return pc.cast(array, pa.binary())


def entity_keys_arrow(join_keys: Sequence[str], table: pa.Table) -> pa.Array:
    """Entity key bytes for every row of ``table`` (a binary array), vectorized."""
    names = sorted(join_keys)
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise EntityKeyError(f"rows have no join key column(s) {missing}; the view needs {names}")
    parts = [_component(n, table.column(n)) for n in names]
    if len(parts) == 1:
        return parts[0]
    pieces: list[Any] = []
    for part in parts:
        pieces += [pc.cast(pc.cast(pc.binary_length(part), pa.string()), pa.binary()), b":", part]
    return pc.binary_join_element_wise(*pieces, b"")


def row_keys_arrow(project: str, vid: bytes, entities: pa.Array) -> pa.Array:
    """Full row keys of one view for an array of encoded entities."""
    return pc.binary_join_element_wise(key_prefix(project), entities, key_suffix(vid), b"")
