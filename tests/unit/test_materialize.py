"""Materialization: windows, incremental watermarks, idempotent re-runs, failures, late data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ladle import FeatureStore, FieldStatus
from ladle.errors import BackendError, DataSourceError, FeatureViewNotFoundError, RequestError
from ladle.materialize import Materializer
from ladle.retrieval.online import OnlineRetriever
from ladle.times import parse_time

from .online_repo import HOURLY, T0, build, tick_rows

H = timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    st = build(tmp_path, materialization={"online_write_batch_size": 2})
    yield st
    st.close()


def stored(store: FeatureStore, view: str = "live_prices", codes: str = "ABCZ") -> dict[str, Any]:
    """What the online store holds, read with ttl out of the way (a clock at T0)."""
    r = OnlineRetriever(store.registry, store.online_store, clock=T0.timestamp)
    resp = r.get_online_features([f"{view}:price", f"{view}:volume"], {"commodity_code": list(codes)})
    return {"price": resp.values[1], "volume": resp.values[2], "ts": resp.event_timestamps[1]}


def us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def expected(upto_hour: int) -> list[float | None]:
    """Prices of A, B, C materialized up to ``upto_hour``, and Z (never written)."""
    return [float(upto_hour)] * 3 + [None]


def test_window_loads_latest_row_per_entity(store: FeatureStore) -> None:
    results = store.materialize(T0 + 5 * H, T0 + 10 * H + timedelta(minutes=30), ["live_prices"])
    got = stored(store)
    assert got["price"] == [10.0, 10.0, 10.0, None]
    assert got["volume"] == [1000, 1001, 1002, None]
    assert got["ts"] == [us(T0 + 10 * H)] * 3 + [0]
    assert [(r.view, r.rows_read, r.rows_written) for r in results] == [("live_prices", 3, 3)]
    assert stored(store, "prices")["price"] == [None] * 4  # only the named view
    assert store.registry.watermark("live_prices") == T0 + 10 * H + timedelta(minutes=30)


def test_window_bounds_are_inclusive(store: FeatureStore) -> None:
    store.materialize(T0 + 3 * H, T0 + 3 * H, ["live_prices"])
    assert stored(store)["price"] == [3.0, 3.0, 3.0, None]


def test_all_online_views_by_default(store: FeatureStore) -> None:
    results = store.materialize(T0, T0 + 2 * H)
    assert sorted(r.view for r in results) == ["live_prices", "prices", "quotes"]
    assert stored(store, "prices")["price"] == [2.0, 2.0, 2.0, None]


def test_rerun_of_the_same_window_changes_nothing(store: FeatureStore) -> None:
    store.materialize(T0, T0 + 6 * H, ["live_prices"])
    first = stored(store)
    watermark = store.registry.watermark("live_prices")
    store.materialize(T0, T0 + 6 * H, ["live_prices"])
    assert stored(store) == first
    assert store.registry.watermark("live_prices") == watermark


def test_an_older_window_never_replaces_newer_values(store: FeatureStore) -> None:
    store.materialize(T0, T0 + 20 * H, ["live_prices"])
    store.materialize(T0, T0 + 5 * H, ["live_prices"])
    assert stored(store)["price"] == expected(20)


def test_incremental_first_run_starts_at_end_minus_ttl(store: FeatureStore) -> None:
    end = T0 + 30 * H
    (result,) = store.materialize_incremental(end, ["prices"])  # ttl 1 day
    assert result.start == end - timedelta(days=1)
    assert stored(store, "prices")["price"] == expected(30)
    assert store.registry.watermark("prices") == end


def test_incremental_without_ttl_looks_back_52_weeks(store: FeatureStore) -> None:
    (result,) = store.materialize_incremental(T0 + 4 * H, ["live_prices"])
    assert result.start == T0 + 4 * H - timedelta(weeks=52)


def test_incremental_continues_from_the_watermark(store: FeatureStore) -> None:
    store.materialize_incremental(T0 + 10 * H, ["live_prices"])
    (second,) = store.materialize_incremental(T0 + 20 * H, ["live_prices"])
    assert (second.start, second.end) == (T0 + 10 * H, T0 + 20 * H)
    assert stored(store)["price"] == expected(20)
    (third,) = store.materialize_incremental(T0 + 20 * H, ["live_prices"])
    assert third.skipped and third.rows_read == 0
    assert store.registry.watermark("live_prices") == T0 + 20 * H


def _expect_failed_then_rerun(store: FeatureStore) -> None:
    assert store.registry.watermark("live_prices") == T0 + H
    runs = store.registry.runs("live_prices")
    assert runs[0].status == "failed" and "simulated" in runs[0].detail
    store.materialize(T0, T0 + 10 * H, ["live_prices"])
    assert stored(store)["price"] == expected(10)
    assert store.registry.watermark("live_prices") == T0 + 10 * H
    assert store.registry.runs("live_prices")[0].status == "succeeded"


def test_an_offline_failure_mid_run_records_nothing_and_a_rerun_succeeds(store: FeatureStore) -> None:
    store.materialize(T0, T0 + H, ["live_prices"])
    real = store.offline_store

    class FailsAfterOneBatch:
        def pull_latest(self, *args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
            for i, batch in enumerate(real.pull_latest(*args, **kwargs)):
                if i == 1:
                    raise DataSourceError("file vanished (simulated)")
                yield batch

    store.__dict__["offline_store"] = FailsAfterOneBatch()
    with pytest.raises(DataSourceError, match="simulated"):
        store.materialize(T0, T0 + 10 * H, ["live_prices"])
    store.__dict__["offline_store"] = real
    _expect_failed_then_rerun(store)


def test_an_online_failure_mid_run_records_nothing_and_a_rerun_succeeds(store: FeatureStore) -> None:
    store.materialize(T0, T0 + H, ["live_prices"])
    real = store.online_store
    seen: list[int] = []

    class DiskFullOnSecondBatch:
        """The real SQLite store, whose input stream breaks at the second batch."""

        def write_batches(self, project: str, view: Any, batches: Iterator[pa.Table]) -> int:
            def failing() -> Iterator[pa.Table]:
                for i, batch in enumerate(batches):
                    seen.append(batch.num_rows)
                    if i == 1:
                        raise BackendError("disk full (simulated)")
                    yield batch

            written: int = real.write_batches(project, view, failing())  # type: ignore[attr-defined]
            return written

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    store.__dict__["online_store"] = DiskFullOnSecondBatch()
    with pytest.raises(BackendError, match="simulated"):
        store.materialize(T0, T0 + 10 * H, ["live_prices"])
    assert seen == [2, 1]  # 3 entities in batches of 2 rows: the second batch failed
    assert stored(store)["price"] == expected(1)  # SQLite rolled the open transaction back
    store.__dict__["online_store"] = real
    _expect_failed_then_rerun(store)


def test_stores_without_batch_writes_get_one_write_per_batch(store: FeatureStore) -> None:
    real = store.online_store
    calls: list[int] = []

    class WriteOnly:
        def write(self, project: str, view: Any, rows: pa.Table) -> int:
            calls.append(rows.num_rows)
            written: int = real.write(project, view, rows)
            return written

        def read(self, project: str, requests: Any) -> Any:
            return real.read(project, requests)

    store.__dict__["online_store"] = WriteOnly()
    (result,) = store.materialize(T0, T0 + 3 * H, ["live_prices"])
    assert calls == [2, 1] and result.rows_written == 3
    store.__dict__["online_store"] = real
    assert stored(store)["price"] == expected(3)


def test_the_materializer_needs_only_a_registry_and_the_stores(store: FeatureStore) -> None:
    """No FeatureStore: a registry that cannot record runs still gets its watermark moved."""
    real = store.registry

    class WatermarksOnly:
        def snapshot(self, *, allow_cache: bool = True) -> Any:
            return real.snapshot(allow_cache=allow_cache)

        def watermark(self, view: str) -> datetime | None:
            return real.watermark(view)

        def record_materialization(self, view: str, start: datetime, end: datetime, rows: int) -> None:
            real.record_materialization(view, start, end, rows)

    materializer = Materializer(
        WatermarksOnly(),  # type: ignore[arg-type]  # only what materialization reads and writes
        store.offline_store,
        store.online_store,
        store.project,
        batch_rows=2,
    )
    (result,) = materializer.materialize_incremental(T0 + 4 * H, ["live_prices"])
    assert (result.rows_read, result.rows_written) == (3, 3)
    assert stored(store)["price"] == expected(4)
    assert real.watermark("live_prices") == T0 + 4 * H
    assert real.runs("live_prices") == []  # type: ignore[attr-defined]  # no run log without RunRecorder


def test_late_data_behind_the_watermark(tmp_path: Path) -> None:
    """Incremental runs never look behind their watermark; a ranged run backfills; newest still wins."""
    store = build(tmp_path, ticks_rows=tick_rows([e for e in HOURLY if e[0] != "C"]))
    store.materialize_incremental(T0 + 30 * H, ["live_prices"])
    late = tick_rows([("C", T0 + 5 * H, 5.0, 5), ("A", T0 + 6 * H, -1.0, -1)])
    store.offline_store.append(store.get_data_source("ticks"), late)
    store.materialize_incremental(T0 + 31 * H, ["live_prices"])
    assert stored(store)["price"] == [31.0, 31.0, None, None]  # the late rows are behind the watermark
    store.materialize(T0, T0 + 31 * H, ["live_prices"])  # backfill
    assert stored(store)["price"] == [31.0, 31.0, 5.0, None]  # C appears; A keeps its newer value
    store.close()


def test_naive_datetimes_and_text_are_utc(store: FeatureStore) -> None:
    (result,) = store.materialize("2024-01-01T02:00:00", (T0 + 3 * H).replace(tzinfo=None), ["live_prices"])
    assert (result.start, result.end) == (T0 + 2 * H, T0 + 3 * H)
    assert parse_time("2024-01-01T03:00:00Z") == parse_time("2024-01-01T04:00:00+01:00") == T0 + 3 * H


def test_progress_bar(store: FeatureStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.materialize(T0, T0 + 2 * H, ["live_prices"], progress=True)
    assert "materialize live_prices" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.materialize(T0 + H, T0, ["live_prices"]), RequestError),
        (lambda s: s.materialize(T0, T0 + H, ["nope"]), FeatureViewNotFoundError),
        (lambda s: s.materialize("yesterday", T0), RequestError),
        (lambda s: s.materialize_incremental("not a time"), RequestError),
    ],
)
def test_bad_requests_change_nothing(store: FeatureStore, call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call(store)
    assert store.registry.watermarks() == {}
    assert stored(store)["price"] == [None] * 4


def test_feature_store_facade(store: FeatureStore) -> None:
    store.materialize(T0, T0 + 7 * H, ["live_prices"])
    store.materialize_incremental(T0 + 8 * H, ["live_prices"])
    assert stored(store)["price"] == expected(8)
    resp = store.get_online_features(["live_prices:price"], {"commodity_code": ["A"]})
    assert resp.statuses[1] == [FieldStatus.PRESENT]  # no ttl on live_prices
    assert datetime.fromtimestamp(resp.event_timestamps[1][0] / 1e6, UTC) == T0 + 8 * H
