"""Ladle's own registry descriptors (ladle.feast_import._proto) agree with Feast 0.67's: same field
numbers, same wire types, for every field Ladle declares."""

from __future__ import annotations

from typing import Any

import pytest

from feast_compat.conftest import feast_message_name
from ladle.feast_import._proto import declared_fields

pytestmark = pytest.mark.feast_client

# Wire types Ladle may declare in place of Feast's: enum as int32, message as bytes.
ENUM, INT32, MESSAGE, BYTES = 14, 5, 11, 12
SCALARS = {"string": 9, "bool": 8, "int64": 3, "float": 2}


def test_declared_fields_match_feast(feast_introspection: dict[str, Any]) -> None:
    feast = feast_introspection["descriptors"]
    for ours, fields in declared_fields().items():
        theirs = feast[feast_message_name(ours)]
        for name, number, kind, repeated in fields:
            assert name in theirs, f"{ours}.{name} is not a field of {feast_message_name(ours)}"
            their_number, their_type, their_repeated = theirs[name]
            assert number == their_number, f"{ours}.{name}: number {number}, Feast says {their_number}"
            if kind == "map":
                assert their_type == MESSAGE and their_repeated, f"{ours}.{name} is not a map in Feast"
                continue
            assert repeated == their_repeated, f"{ours}.{name}: repeated differs"
            if kind == "int32":
                assert their_type in (ENUM, INT32), f"{ours}.{name}: Feast type {their_type}"
            elif kind == "bytes":
                assert their_type in (MESSAGE, BYTES), f"{ours}.{name}: Feast type {their_type}"
            elif kind in SCALARS:
                assert their_type == SCALARS[kind], f"{ours}.{name}: Feast type {their_type}"
            else:
                assert their_type == MESSAGE, f"{ours}.{name}: Feast type {their_type}, Ladle says {kind}"
