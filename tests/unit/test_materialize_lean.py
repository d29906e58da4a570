"""What a materialization process loads: not pandas (~50 MB of RSS), and the NumPy views that avoid it.

pyarrow imports pandas on the first ``to_numpy`` or ``pa.array`` call; the write path reads
buffers instead (``ladle.online.arrays.as_numpy``). The views are compared with pyarrow's own
``to_numpy`` (the reference), including sliced arrays, whose buffers start before their first value.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ladle.online.arrays import as_numpy, int64_array

ARRAYS = [
    pa.array([1, -2, 3, 2**40], pa.int64()),
    pa.array([1.5, float("nan"), -0.0], pa.float64()),
    pa.array([1, 2, 3], pa.int32()),
    pa.array([0.5, 2.5], pa.float32()),
    pa.array([255, 0, 7], pa.uint8()),
    pa.array([3, 4, 5], pa.uint32()),
    pa.array([True, False, True, True, False, False, True, False, True, True], pa.bool_()),
    pa.array([], pa.int64()),
    pa.array([], pa.bool_()),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.type}-{len(a)}")
@pytest.mark.parametrize("cut", [(0, None), (1, None), (1, 2), (3, None)])
def test_as_numpy_equals_pyarrows_to_numpy(array: pa.Array, cut: tuple[int, int | None]) -> None:
    start, length = cut
    part = array.slice(start, length) if start <= len(array) else array
    got = as_numpy(part)
    want = part.to_numpy(zero_copy_only=False)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_arrays_with_nulls_go_through_pyarrow() -> None:
    part = pa.array([1, None, 3], pa.int64())
    np.testing.assert_array_equal(as_numpy(part), part.to_numpy(zero_copy_only=False))


@pytest.mark.parametrize(
    "array",
    [
        pa.array([1, None, 3, None], pa.int64()),
        pa.array([None, 2.5, float("nan")], pa.float64()),
        pa.array([None, None], pa.int32()),
        pa.array([4, 5, None, 6], pa.uint8()).slice(1),
    ],
    ids=str,
)
def test_nulls_become_the_fill_value(array: pa.Array) -> None:
    import pyarrow.compute as pc

    want = pc.fill_null(array, 7).to_numpy(zero_copy_only=False)
    got = as_numpy(array, fill=7)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_int64_array_round_trips() -> None:
    values = np.arange(5, dtype=np.int64)[::2]  # not contiguous
    assert int64_array(values).to_pylist() == [0, 2, 4]


CHILD = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    import pyarrow.parquet as pq
    import duckdb
    from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, Int64, ValueType

    repo = Path(sys.argv[1])
    (repo / "data").mkdir()
    duckdb.sql(
        "COPY (SELECT 'c' || (range % 50) AS code, TIMESTAMPTZ '2024-01-01' + to_seconds(range) AS ts,"
        " CASE WHEN range % 7 = 0 THEN NULL ELSE range * 0.5::DOUBLE END AS price, range AS qty FROM range(500))"
        f" TO '{repo / 'data' / 'x.parquet'}' (FORMAT parquet)"
    )
    store = FeatureStore(
        config={
            "project": "lean",
            "registry": {"path": str(repo / "registry.db")},
            "online_store": {"type": "sqlite", "path": str(repo / "online.db")},
            "offline_store": {"type": "duckdb"},
        },
        repo_path=repo,
    )
    code = Entity(name="code", join_keys=["code"], value_type=ValueType.STRING)
    source = FileSource(name="x", path="data/x.parquet", timestamp_field="ts")
    view = FeatureView(name="v", entities=[code], ttl=timedelta(0),
                       schema=[Field(name="price", dtype=Float64), Field(name="qty", dtype=Int64)], source=source)
    store.apply([code, source, view])
    (result,) = store.materialize(datetime(2023, 12, 31, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), ["v"])
    print(json.dumps({"written": result.rows_written, "pandas": "pandas" in sys.modules}))
    """
)


def test_materialization_into_sqlite_does_not_load_pandas(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"written": 50, "pandas": False}
