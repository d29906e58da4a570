"""A view's schemas over time: fingerprints, the JSON every store keeps, rows of older schemas.

Every row blob carries a 32-bit fingerprint of the feature schema it was written with, and every
store keeps the schema of each fingerprint it ever wrote (SQLite in its catalog table, Redis in the
project's ``_meta`` hash) as JSON ``[[name, dtype name], ...]``. So a schema change needs no
migration: a read groups the rows by fingerprint, decodes each group with its own schema, and keeps
the features the current schema has under the same name *and* dtype; any other wanted feature reads
as ``None`` (values of a retyped feature mean nothing under the new type).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ladle.types import DType, dtype_from_name

Fields = Sequence[tuple[str, DType]]


def fingerprint(spec: bytes) -> int:
    """The 32-bit fingerprint of a schema's text form: 4 bytes of BLAKE2b, little-endian."""
    return int.from_bytes(hashlib.blake2b(spec, digest_size=4).digest(), "little")


def fields_json(fields: Fields) -> list[list[str]]:
    """The JSON-able form of a schema, as the stores keep it: ``[[name, dtype name], ...]``."""
    return [[name, dtype.name] for name, dtype in fields]


def fields_from_json(data: str | bytes | list[list[str]]) -> list[tuple[str, DType]]:
    """A schema back from :func:`fields_json` (given parsed, or as JSON text)."""
    pairs = json.loads(data) if isinstance(data, str | bytes) else data
    return [(name, dtype_from_name(dtype)) for name, dtype in pairs]


def same_features(old: Fields, current: Fields, names: Iterable[str]) -> list[str]:
    """Of ``names``, those the ``old`` schema has with the dtype they have in ``current``."""
    was, now = dict(old), dict(current)
    return [name for name in names if name in was and was[name] == now.get(name)]


def group_by_fingerprint(blobs: Sequence[bytes | None], at: int) -> dict[int, tuple[list[int], list[bytes]]]:
    """Blobs by the u32 fingerprint at byte ``at``: ``{fingerprint: (positions, blobs)}``.

    ``None`` (no row) and blobs too short to hold a fingerprint are left out: they read as missing.
    """
    end = at + 4
    groups: dict[int, tuple[list[int], list[bytes]]] = {}
    for i, blob in enumerate(blobs):
        if blob is not None and len(blob) >= end:
            positions, members = groups.setdefault(int.from_bytes(blob[at:end], "little"), ([], []))
            positions.append(i)
            members.append(blob)
    return groups


def scatter(values: Mapping[str, list[Any]], positions: Sequence[int], columns: Mapping[str, Sequence[Any]]) -> None:
    """Write the decoded ``columns`` of one group into the full-length ``values`` at ``positions``."""
    for name, column in columns.items():
        target = values[name]
        for i, value in zip(positions, column, strict=True):
            target[i] = value
