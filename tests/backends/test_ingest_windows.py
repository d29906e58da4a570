"""``ladle ingest`` into a window-replacing store (Iceberg, Doris on MariaDB) in bounded memory (windows.py).

Small outputs are one overwrite of the whole window, as before; outputs over the chunk size are
staged on disk and replaced time chunk by time chunk: the chunks tile the window (stored rows in
hours without new rows are deleted too), rows outside the window are kept, a re-run changes
nothing, and a child process ingesting 1.5 times ``memory_budget`` peaks under it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ladle.ingest.windows import Chunk, plan_chunks, replace_bounded

from .iceberg_support import TS, day, open_iceberg, price_rows, prices_source

pytestmark = pytest.mark.iceberg
pytest.importorskip("pyiceberg")

H = 3_600_000_000  # an hour in µs
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _hour(h: int) -> datetime:
    return EPOCH + timedelta(hours=h)


def test_chunks_tile_the_window_in_whole_hours_within_the_row_limit() -> None:
    start, end = _hour(10) + timedelta(minutes=30), _hour(40)
    counts = {10: 3, 11: 3, 12: 1, 20: 9, 21: 1, 39: 2}
    chunks = plan_chunks(counts, start, end, chunk_rows=5)
    assert chunks == [
        Chunk(start, _hour(11), 3),
        Chunk(_hour(11), _hour(20), 4),
        Chunk(_hour(20), _hour(21), 9),  # one hour over the limit is a chunk alone
        Chunk(_hour(21), end, 3),
    ]
    assert plan_chunks({}, start, end, 5) == [Chunk(start, end, 0)]
    assert plan_chunks(counts, start, end, 100) == [Chunk(start, end, 19)]


def _source_rows(store: object) -> list[tuple[object, ...]]:
    table = store._table(prices_source()).scan().to_arrow()  # type: ignore[attr-defined]
    return sorted((r["code"], r["event_ts"], r["price"]) for r in table.to_pylist())


def test_a_large_output_is_replaced_chunk_by_chunk(tmp_path: Path) -> None:
    store = open_iceberg(tmp_path)
    source = prices_source()
    # stored before: rows on days 0..9 every 6 hours (the window [day 2, day 8) covers 24 of them)
    old_days = [d / 4 for d in range(40)]
    store.append(source, price_rows(["OLD"] * 40, old_days, [float(i) for i in range(40)]))
    calls: list[tuple[datetime, datetime, int]] = []

    def replace(rows: pa.Table, start: datetime, end: datetime) -> int:
        calls.append((start, end, rows.num_rows))
        return store.replace_window(source, rows, start, end)

    # new rows only on days 3 and 6, hourly, in pieces; some outside the window (ignored)
    new_days = [3 + h / 24 for h in range(24)] + [6 + h / 24 for h in range(24)] + [9.5]

    def pieces() -> Iterator[pa.Table]:
        for lo in range(0, len(new_days), 7):
            part = new_days[lo : lo + 7]
            yield price_rows(["NEW"] * len(part), part, [100.0 + d for d in part])

    empty = pa.schema([("code", pa.string()), ("event_ts", TS), ("price", pa.float64())])
    one_piece = price_rows(["NEW"], [3.0], [1.0]).nbytes
    written = replace_bounded(pieces(), "event_ts", day(2), day(8), replace, empty, chunk_bytes=one_piece * 10)
    assert written == 48
    assert len(calls) > 2  # staged and cut: several overwrites
    assert calls[0][0] == day(2) and calls[-1][1] == day(8)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(calls))  # consecutive, no gap
    assert sum(n for _, _, n in calls) == 48
    expected = sorted(
        [("OLD", day(d), float(i)) for i, d in enumerate(old_days) if not day(2) <= day(d) < day(8)]
        + [("NEW", day(d), 100.0 + d) for d in new_days if d < 8]
    )
    got = _source_rows(store)
    assert [(c, t) for c, t, _ in got] == [(c, t) for c, t, _ in expected]
    assert [p for *_, p in got] == pytest.approx([p for *_, p in expected])
    # the same run again: the same rows (each chunk is a new overwrite snapshot of equal content:
    # the store skips only a replacement equal to its current snapshot, i.e. the last chunk)
    replace_bounded(pieces(), "event_ts", day(2), day(8), replace, empty, chunk_bytes=one_piece * 10)
    assert _source_rows(store) == got
    # a small output is still one overwrite of the whole window
    calls.clear()
    assert replace_bounded(pieces(), "event_ts", day(2), day(8), replace, empty, chunk_bytes=2**30) == 48
    assert [(a, b) for a, b, _ in calls] == [(day(2), day(8))]


BUDGET_MB = 800
PIECES, PIECE_ROWS = 14, 200_000  # 2,800,000 rows of ~429 Arrow bytes: ~1.2 GB, 1.5 times the budget
REPO = """
from datetime import timedelta

import numpy as np
import pyarrow as pa

from ladle import Entity, FeatureView, Field, FileSource, Float64, String, ValueType
from ladle.ingest import Ingestion

PIECES, PIECE_ROWS, T0_US = {pieces}, {piece_rows}, 1704067200000000
item = Entity(name="item", join_keys=["code"], value_type=ValueType.STRING)
source = FileSource(name="big", path="data/big/", timestamp_field="event_timestamp")
big = FeatureView(name="big", entities=[item], source=source, ttl=timedelta(0),
                  schema=[Field(name="f0", dtype=Float64), Field(name="note", dtype=String)])
CODES = pa.array([f"k{{i}}" for i in range(5000)])
NOTES = pa.array([f"{{i:03d}}" + "x" * 397 for i in range(64)])


def rows(window):
    for p in range(PIECES):
        i = np.arange(p * PIECE_ROWS, (p + 1) * PIECE_ROWS, dtype=np.int64)
        ts = pa.array(T0_US + i * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        yield pa.table({{"code": CODES.take(pa.array(i % 5000)), "event_timestamp": ts, "f0": pa.array(i * 0.5),
                        "note": NOTES.take(pa.array(i % 64))}})


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


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc (Linux)")
def test_an_iceberg_ingestion_larger_than_the_budget_stays_under_it(tmp_path: Path) -> None:
    import duckdb

    (tmp_path / "feature_store.yaml").write_text(
        "project: bigice\nregistry: data/registry.db\nonline_store: {type: sqlite, path: data/online.db}\n"
        f"offline_store: {{type: iceberg, namespace: big}}\nmaterialization: {{memory_budget: {BUDGET_MB}MB}}\n"
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(REPO).format(pieces=PIECES, piece_rows=PIECE_ROWS))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True, text=True, env=dict(os.environ), timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
    print(f"iceberg ingest of {PIECES * PIECE_ROWS:,} rows (~1.2 GB in Arrow): peak RSS {peak} MB, budget {BUDGET_MB}")
    assert peak < BUDGET_MB, f"peak RSS {peak} MB over the {BUDGET_MB} MB budget"
    files = [str(p) for p in (tmp_path / "data").rglob("*.parquet")]
    n = PIECES * PIECE_ROWS
    got = duckdb.execute(
        "SELECT count(*), count(DISTINCT event_timestamp), sum(f0), min(length(note)) FROM read_parquet(?)", [files]
    ).fetchone()
    assert got == (n, n, pytest.approx(0.5 * n * (n - 1) / 2), 400)


@pytest.mark.doris
@pytest.mark.mariadb
def test_a_large_output_is_replaced_chunk_by_chunk_on_mariadb(tmp_path: Path) -> None:
    """The same chunking through the Doris store's ``replace_window`` (one transaction per chunk on MariaDB)."""
    from .test_doris_mariadb import admin_connection, at, load, open_store, view_of

    admin = admin_connection()
    name = f"ladle_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        store = open_store(tmp_path, name)

        def grid(code: str, hours: list[float], base: float) -> pa.Table:
            stamps = pa.array([at(60 * h) for h in hours], TS)
            return pa.table({"code": [code] * len(hours), "event_ts": stamps, "created": stamps,
                             "price": [base + h for h in hours]})  # fmt: skip

        source = load(store, name, "ticks", grid("OLD", [float(h) for h in range(10)], 0.0))
        calls: list[tuple[datetime, datetime]] = []

        def replace(rows: pa.Table, start: datetime, end: datetime) -> int:
            calls.append((start, end))
            return store.replace_window(source, rows, start, end)

        new_hours = [3 + m / 60 for m in range(0, 60, 5)] + [6 + m / 60 for m in range(0, 60, 5)]
        pieces = [grid("NEW", new_hours[i : i + 5], 100.0) for i in range(0, len(new_hours), 5)]
        empty = pieces[0].schema
        written = replace_bounded(iter(pieces), "event_ts", at(120), at(480), replace, empty, pieces[0].nbytes * 2)
        assert written == len(new_hours)
        assert len(calls) >= 2 and calls[0][0] == at(120) and calls[-1][1] == at(480)
        rows = [r for b in store.pull_all(view_of(source), at(-1000), at(10_000)) for r in b.to_pylist()]
        got = sorted((r["code"], r["event_timestamp"]) for r in rows)
        kept = [("OLD", at(60 * h)) for h in range(10) if not 2 <= h < 8]
        assert got == sorted(kept + [("NEW", at(60 * h)) for h in new_hours])
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
