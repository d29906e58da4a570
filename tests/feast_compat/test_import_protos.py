"""Ladle's own registry descriptors (ladle.feast_import._proto) agree with Feast 0.67's: same field
numbers, same wire types, for every field Ladle declares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feast_compat.conftest import run_feast
from ladle.feast_import._proto import declared_fields

pytestmark = pytest.mark.feast_client

# Ladle's message name -> Feast's full name (where Ladle's own name differs or is shared).
FEAST_NAMES = {
    "Duration": "google.protobuf.Duration",
    "Timestamp": "google.protobuf.Timestamp",
    "FileOptions": "feast.core.DataSource.FileOptions",
    "KafkaOptions": "feast.core.DataSource.KafkaOptions",
    "RequestDataOptions": "feast.core.DataSource.RequestDataOptions",
    "SchemaJson": "feast.core.StreamFormat.JsonFormat",
    "NamedSpec": "feast.core.SavedDatasetSpec",
}

DUMP = """
import json, sys
from google.protobuf import descriptor_pool
import feast.protos.feast.core.Registry_pb2  # registers every core message
pool = descriptor_pool.Default()
out = {}
for name in json.loads(sys.argv[1]):
    d = pool.FindMessageTypeByName(name)
    out[name] = {f.name: [f.number, f.type, f.is_repeated] for f in d.fields}
print(json.dumps(out))
"""
# Wire types Ladle may declare in place of Feast's: enum as int32, message as bytes.
ENUM, INT32, MESSAGE, BYTES = 14, 5, 11, 12
SCALARS = {"string": 9, "bool": 8, "int64": 3}


def test_declared_fields_match_feast(feast_python: Path, tmp_path: Path) -> None:
    declared = declared_fields()
    names = {n: FEAST_NAMES.get(n, f"feast.core.{n}") for n in declared}
    done = run_feast(feast_python, ["-c", DUMP, json.dumps(sorted(set(names.values())))], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    feast = json.loads(done.stdout.strip().splitlines()[-1])
    for ours, fields in declared.items():
        theirs = feast[names[ours]]
        for name, number, kind, repeated in fields:
            assert name in theirs, f"{ours}.{name} is not a field of {names[ours]}"
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
