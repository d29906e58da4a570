"""Erasing one entity's rows from a Parquet source (``ladle erase``): each file rewritten without them.

Every visible file of the source is read; a file holding matching rows is written again without them
under a hidden temporary name and renamed over the original (atomic per file: a reader sees the old
file or the new one). Files without the key columns (or without matching rows) are left untouched.
Single-file sources take the same advisory lock as appends, so an append and an erasure never lose
each other's rows. A value stored only in a hive partition path (``key=value/``) is not a column of
the file and is not matched (docs/feature-logging.md, "Erasure").
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from functools import reduce
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ladle.definitions import DataSource
from ladle.errors import DataSourceError, EntityKeyError
from ladle.offline.append import _file_lock
from ladle.offline.sources import SourceLocation, file_source


def _mask(table: pa.Table, keys: Mapping[str, object]) -> pa.ChunkedArray:
    tests = []
    for name, value in keys.items():
        column = table[name]
        try:
            scalar = pa.scalar(value).cast(column.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise EntityKeyError(f"column '{name}' is {column.type}; {value!r} cannot be compared with it") from exc
        tests.append(pc.fill_null(pc.equal(column, scalar), False))
    return reduce(pc.and_, tests)


def erase_file_rows(source: DataSource, repo_path: Path, keys: Mapping[str, object], dry_run: bool = False) -> int:
    """Remove (or count) the rows whose columns equal ``keys`` from every file of the source."""
    location = SourceLocation.of(file_source(source), repo_path)
    try:
        files = location.files()
    except DataSourceError:  # nothing written yet: nothing to erase
        return 0
    total = 0
    for name in files:
        path = Path(name)
        with _file_lock(path) if location.kind == "file" else nullcontext():
            if not set(keys) <= set(pq.read_schema(path).names):
                continue
            table = pq.read_table(path)
            mask = _mask(table, keys)
            hits = int(pc.sum(mask).as_py() or 0)
            if hits and not dry_run:
                tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
                try:
                    pq.write_table(table.filter(pc.invert(mask)), tmp)
                    os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
            total += hits
    return total
