"""``ladle ingest`` in bounded memory: an output several times ``memory_budget`` stays under it.

The ingestion's ``compute`` yields its rows in pieces (a generator); the child process runs
``ladle ingest`` (Parquet directory) and reports its peak RSS (``VmHWM`` of /proc/self/status;
Linux only, like the test). The files written are then checked against the rows the generator
makes (computed here with NumPy, the reference): every row once, per-partition counts and sums,
sampled rows exactly, each file sorted by event time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc (Linux)"),
]

BUDGET_MB = 400
PIECES = 42
PIECE_ROWS = 500_000  # 21,000,000 rows of ~57 bytes in Arrow: ~1.2 GB, three times the budget
T0_US = int(np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64))

REPO = """
from datetime import timedelta

import numpy as np
import pyarrow as pa

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.ingest import Ingestion

PIECES, PIECE_ROWS, T0_US = {pieces}, {piece_rows}, {t0}
item = Entity(name="item", join_keys=["code"], value_type=ValueType.STRING)
source = FileSource(name="big", path="data/big/", timestamp_field="event_timestamp", created_timestamp_column="created")
big = FeatureView(name="big", entities=[item], source=source, ttl=timedelta(0),
                  schema=[Field(name=f"f{{j}}", dtype=Float64) for j in range(4)])
CODES = pa.array([f"k{{i}}" for i in range(5000)])


def piece(p):
    i = np.arange(p * PIECE_ROWS, (p + 1) * PIECE_ROWS, dtype=np.int64)
    ts = pa.array(T0_US + i * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    columns = {{"code": CODES.take(pa.array(i % 5000)), "event_timestamp": ts, "created": ts}}
    columns.update({{f"f{{j}}": pa.array(i * 0.5 + j) for j in range(4)}})
    return pa.table(columns)


def rows(window):
    for p in range(PIECES):
        yield piece(p)


bulk = Ingestion(name="bulk", feature_view="big", compute=rows)
"""

CHILD = textwrap.dedent(
    """
    import json, sys
    from ladle.cli.main import cli
    try:
        cli(["-c", sys.argv[1], "ingest", "bulk"], standalone_mode=False)
    finally:
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
        print(json.dumps({"peak_mb": int(status["VmHWM"].split()[0]) // 1024}))
    """
)


def test_an_ingestion_several_times_the_budget_stays_under_it(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text(
        "project: bigingest\nregistry: data/registry.db\n"
        "online_store: {type: sqlite, path: data/online.db}\noffline_store: {type: duckdb}\n"
        f"materialization: {{memory_budget: {BUDGET_MB}MB}}\n"
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(REPO).format(pieces=PIECES, piece_rows=PIECE_ROWS, t0=T0_US))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        timeout=1200,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
    print(f"ingest of {PIECES * PIECE_ROWS:,} rows: peak RSS {peak} MB (budget {BUDGET_MB} MB)")
    assert peak < BUDGET_MB, f"peak RSS {peak} MB over the {BUDGET_MB} MB budget"

    files = sorted((tmp_path / "data" / "big").glob("*.parquet"))
    # reference: row i has event time T0 + i s, code k{i % 5000}, f_j = i / 2 + j
    total = PIECES * PIECE_ROWS
    i = np.arange(total, dtype=np.int64)
    months = (T0_US + i * 1_000_000).astype("datetime64[us]").astype("datetime64[M]")  # compared as numbers
    labels, counts = np.unique(months, return_counts=True)
    assert [f.name for f in files] == [f"bulk-{m}.parquet" for m in labels.astype(str)]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, month, count in zip(files, labels, counts, strict=True):
        sel = i[months == month]
        got = con.execute(
            "SELECT count(*), sum(f0), min(epoch_us(event_timestamp)), max(epoch_us(event_timestamp)), "
            "bool_and(event_timestamp = created) FROM read_parquet(?)",
            [str(name)],
        ).fetchone()
        assert got == (
            count,
            pytest.approx(float((sel * 0.5).sum())),
            T0_US + sel[0] * 10**6,
            T0_US + sel[-1] * 10**6,
            True,
        )
        ordered = con.execute(
            "SELECT bool_and(d >= 0) FROM (SELECT epoch_us(event_timestamp) - lag(epoch_us(event_timestamp)) "
            "OVER () AS d FROM read_parquet(?))",
            [str(name)],
        ).fetchone()
        assert ordered == (True,)
    sample = np.random.default_rng(3).choice(total, 200, replace=False)
    listed = [str(f) for f in files]
    got_rows = con.execute(
        "SELECT (epoch_us(event_timestamp) - ?) // 1000000 AS i, code, f0, f1, f2, f3 FROM read_parquet(?) "
        "WHERE (epoch_us(event_timestamp) - ?) // 1000000 IN (SELECT unnest(?)) ORDER BY i",
        [T0_US, listed, T0_US, sorted(sample.tolist())],
    ).fetchall()
    assert got_rows == [
        (int(k), f"k{k % 5000}", k * 0.5, k * 0.5 + 1, k * 0.5 + 2, k * 0.5 + 3) for k in sorted(sample)
    ]
