"""Idempotent partition writes: re-running a window adds nothing, other windows are kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladle.errors import DataSourceError
from ladle.ingest.partitions import replace_window

T0 = datetime(2024, 1, 20, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def rows(hours: list[int], value_offset: int = 0) -> pa.Table:
    ts = [T0 + timedelta(hours=h) for h in hours]
    return pa.table({"k": ["a"] * len(ts), "event_timestamp": pa.array(ts, TS), "v": [h + value_offset for h in hours]})


def read_all(directory: Path) -> pa.Table:
    files = sorted(directory.glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by("event_timestamp") if files else rows([])


def test_rerun_of_the_same_window_adds_nothing(tmp_path: Path) -> None:
    data = rows(list(range(0, 24 * 20, 6)))
    start, end = T0, T0 + timedelta(days=30)
    assert replace_window(tmp_path, "job", data, "event_timestamp", start, end) == len(data)
    first = read_all(tmp_path)
    assert replace_window(tmp_path, "job", data, "event_timestamp", start, end) == len(data)
    assert read_all(tmp_path).equals(first)
    assert first.num_rows == len(data)
    assert {p.name for p in tmp_path.glob("*.parquet")} == {"job-2024-01.parquet", "job-2024-02.parquet"}


def test_window_replaces_inside_and_keeps_outside(tmp_path: Path) -> None:
    replace_window(tmp_path, "job", rows(list(range(48))), "event_timestamp", T0, T0 + timedelta(hours=48))
    newer = rows(list(range(48)), value_offset=1000)
    lo, hi = T0 + timedelta(hours=10), T0 + timedelta(hours=20)
    assert replace_window(tmp_path, "job", newer, "event_timestamp", lo, hi) == 10
    got = read_all(tmp_path).column("v").to_pylist()
    assert got == [h + 1000 if 10 <= h < 20 else h for h in range(48)]


def test_other_writers_files_are_untouched(tmp_path: Path) -> None:
    replace_window(tmp_path, "push", rows([1, 2]), "event_timestamp", T0, T0 + timedelta(days=1))
    replace_window(tmp_path, "job", rows([3]), "event_timestamp", T0, T0 + timedelta(days=1))
    replace_window(tmp_path, "job", rows([]), "event_timestamp", T0, T0 + timedelta(days=1))
    assert [p.name for p in tmp_path.glob("*.parquet")] == ["push-2024-01.parquet"]


def test_bad_writer_name_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="writer name"):
        replace_window(tmp_path, "../evil", rows([1]), "event_timestamp", T0, T0 + timedelta(days=1))
    with pytest.raises(DataSourceError, match="no timestamp column"):
        replace_window(tmp_path, "job", rows([1]), "ts", T0, T0 + timedelta(days=1))


@settings(max_examples=30, deadline=None)
@given(
    first=st.lists(st.integers(0, 24 * 60), max_size=40),
    second=st.lists(st.integers(0, 24 * 60), max_size=40),
    lo=st.integers(0, 24 * 60),
    span=st.integers(1, 24 * 40),
    granularity=st.sampled_from(["month", "day"]),
)
def test_matches_a_model(
    tmp_path_factory: pytest.TempPathFactory, first: list[int], second: list[int], lo: int, span: int, granularity: str
) -> None:
    directory = tmp_path_factory.mktemp("parts")
    whole = (T0, T0 + timedelta(hours=24 * 61))
    replace_window(directory, "job", rows(sorted(first)), "event_timestamp", *whole, granularity=granularity)  # type: ignore[arg-type]
    window = (T0 + timedelta(hours=lo), T0 + timedelta(hours=lo + span))
    replace_window(directory, "job", rows(sorted(second), 10_000), "event_timestamp", *window, granularity=granularity)  # type: ignore[arg-type]
    expected = sorted(
        [h for h in first if not lo <= h < lo + span] + [h + 10_000 for h in second if lo <= h < lo + span]
    )
    assert sorted(read_all(directory).column("v").to_pylist()) == expected


def test_an_unbounded_window_replaces_every_earlier_row_of_the_writer(tmp_path: Path) -> None:
    everything = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
    replace_window(tmp_path, "job", rows(list(range(0, 24 * 40, 24))), "event_timestamp", *everything)
    later = rows([24 * 45, 24 * 46])  # a re-run whose output moved (e.g. a replay anchored on a later "now")
    replace_window(tmp_path, "job", later, "event_timestamp", *everything)
    assert read_all(tmp_path).column("v").to_pylist() == [24 * 45, 24 * 46]
    assert [p.name for p in tmp_path.glob("*.parquet")] == ["job-2024-03.parquet"]
