"""Entity keys: the one byte form every online store keys its rows by, and the join-key checks.

**The entity key** (:func:`text_entity_keys` for Python values, :func:`text_entity_keys_arrow` for
Arrow columns; both give the same bytes): with one join key, the value itself — UTF-8 text, a
decimal integer (INT32 and INT64 alike) or raw bytes; with several, sorted by join-key name, each
value written ``<byte length>:<bytes>`` (``2:423:ICE`` is station 42, venue ICE). SQLite's
``__key`` column holds it, and Redis puts it inside its row keys (the cluster hash tag), where it
stays readable in ``redis-cli``. A view without entities has the one join key
:data:`DUMMY_JOIN_KEY`, always ``""``.

It is injective for a view, whose join keys have fixed types: one value of one type has one text,
and the length prefixes make compound keys unambiguous whatever bytes (``:``, braces) values hold.
The type is *not* part of the key: ``1`` and ``"1"`` name the same entity, which only matters for a
join key whose type is declared nowhere (then the data decides it).

>>> text_entity_keys(["station", "venue"], {"station": [42], "venue": ["ICE"]})
[b'2:423:ICE']
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import FeatureView
from ladle.errors import EntityKeyError
from ladle.online.arrays import contiguous
from ladle.types import ValueType


def arrow_key_type(name: str, arrow_type: pa.DataType) -> ValueType:
    """The key value type an Arrow column holds: any integer → INT64, text → STRING, binary → BYTES."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return ValueType.INT64
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return ValueType.STRING
    if (
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_fixed_size_binary(arrow_type)
    ):
        return ValueType.BYTES
    raise EntityKeyError(f"join key column '{name}' has type {arrow_type}; join keys are strings, integers or bytes")


def key_array(name: str, column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A join-key column as one plain array, checked: every row needs a key (every store's rule)."""
    array = contiguous(column)
    if array.null_count:
        raise EntityKeyError(f"join key '{name}' has {array.null_count} null value(s); every row needs a key")
    return array


#: Feast's join key of views without entities: every row of such a view has the key ``""``.
DUMMY_JOIN_KEY = "__dummy_id"


def key_types_for(view: FeatureView) -> dict[str, ValueType | None]:
    """Each join key's declared value type (``None`` when neither entity nor schema says).

    A view without entities has the one key :data:`DUMMY_JOIN_KEY` (STRING), always ``""``.
    """
    if not view.entities:
        return {DUMMY_JOIN_KEY: ValueType.STRING}
    declared = {f.name: f.dtype.value_type for f in view.entity_columns}
    out: dict[str, ValueType | None] = {}
    for entity in view.entities:
        out[entity.join_key] = declared.get(entity.join_key, entity.value_type)
    return out


def entity_join_keys(view: FeatureView) -> tuple[str, ...]:
    """The join keys a view's entity key is made of, sorted (:data:`DUMMY_JOIN_KEY` without entities)."""
    return tuple(sorted(key_types_for(view)))


# -- the entity key -------------------------------------------------------------------------------


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


def text_entity_keys(join_keys: Sequence[str], keys: Mapping[str, Sequence[Any]]) -> list[bytes]:
    """Entity keys for N entities given as Python values per join key (reads)."""
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


def _component(name: str, column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One join key's part of the entity: an integer in decimal, text as UTF-8, bytes as they are."""
    array = key_array(name, column)
    if arrow_key_type(name, array.type) == ValueType.INT64:
        array = pc.cast(array, pa.string())
    return pc.cast(array, pa.binary())


def text_entity_keys_arrow(join_keys: Sequence[str], table: pa.Table) -> pa.Array:
    """Entity keys for every row of ``table`` (a binary array), vectorized (writes).

    Rows of a view without entities need no :data:`DUMMY_JOIN_KEY` column: its value is always ``""``.
    """
    names = sorted(join_keys)
    missing = [n for n in names if n not in table.column_names and n != DUMMY_JOIN_KEY]
    if missing:
        raise EntityKeyError(f"rows have no join key column(s) {missing}; the view needs {names}")
    parts = [
        _component(n, table.column(n))
        if n in table.column_names
        else pa.nulls(table.num_rows, pa.binary()).fill_null(b"")
        for n in names
    ]
    if len(parts) == 1:
        return parts[0]
    pieces: list[Any] = []
    for part in parts:
        pieces += [pc.cast(pc.cast(pc.binary_length(part), pa.string()), pa.binary()), b":", part]
    return pc.binary_join_element_wise(*pieces, b"")


# -- erasure: which stored entity keys belong to one entity --------------------------------------


def _split_key(key: bytes, count: int) -> list[bytes] | None:
    """The ``count`` values of a compound entity key (``<len>:<bytes>`` each), or None if malformed."""
    parts, pos = [], 0
    for _ in range(count):
        colon = key.find(b":", pos)
        if colon < 0 or not key[pos:colon].isdigit():
            return None
        start = colon + 1
        stop = start + int(key[pos:colon])
        parts.append(key[start:stop])
        pos = stop
    return parts if pos == len(key) else None


def exact_entity_key(join_keys: Sequence[str], keys: Mapping[str, Any]) -> bytes | None:
    """The one entity key when ``keys`` gives every join key of the view, else None (a partial key)."""
    if set(join_keys) - set(keys):
        return None
    return text_entity_keys(join_keys, {n: [keys[n]] for n in join_keys})[0]


def entity_key_matcher(join_keys: Sequence[str], keys: Mapping[str, Any]) -> Callable[[bytes], bool]:
    """Whether a stored entity key of a view with ``join_keys`` has the values in ``keys`` (any subset of
    them: the others match anything), e.g. every (station, venue) row of one station."""
    names = sorted(join_keys)
    wanted = [(i, _value_bytes(n, keys[n])) for i, n in enumerate(names) if n in keys]
    if len(names) == 1:
        only = wanted[0][1] if wanted else None
        return lambda key: only is None or key == only
    count = len(names)

    def match(key: bytes) -> bool:
        parts = _split_key(key, count)
        return parts is not None and all(parts[i] == value for i, value in wanted)

    return match
