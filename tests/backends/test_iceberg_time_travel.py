"""Time travel: a training set taken as of a snapshot, or an instant, stays the same after later
appends and corrections; the job says which snapshots it read."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ladle.errors import RequestError
from ladle.offline.iceberg.store import IcebergOfflineStore

from .iceberg_support import day, entity, open_iceberg, price_rows, prices_source, prices_view, select

FRAME = entity(["A", "B", "A", "B"], [0.5, 0.5, 2.5, 2.5])
#: What the first data gives (hand-computed): A at 0 = 1.0, B at 0 = 2.0, A at 2 = 3.0; B has nothing after 0.
FIRST = [1.0, 2.0, 3.0, 2.0]


def training(store: IcebergOfflineStore, **kwargs: object) -> tuple[list[object], dict[str, int]]:
    view = prices_view(prices_source(), ttl=timedelta(days=7))
    job = store.historical(FRAME, "event_timestamp", [select(view)], False, **kwargs)  # type: ignore[arg-type]
    return job.to_arrow().column("price").to_pylist(), job.snapshots


def later_changes(store: IcebergOfflineStore) -> None:
    """An append (new rows that would change the answers) and a correction of existing rows."""
    store.append(prices_source(), price_rows(["B"], [2], [20.0]))
    # The correction rewrites day 0: A's row goes from 1.0 to -1.0, B's stays.
    store.replace_window(prices_source(), price_rows(["A", "B"], [0, 0], [-1.0, 2.0]), day(0), day(1))


@pytest.fixture
def store(tmp_path: Path) -> IcebergOfflineStore:
    store = open_iceberg(tmp_path)
    store.append(prices_source(), price_rows(["A", "B"], [0, 0], [1.0, 2.0]))
    store.append(prices_source(), price_rows(["A"], [2], [3.0]))
    return store


def test_retraining_on_the_snapshots_a_job_read(store: IcebergOfflineStore) -> None:
    first, read = training(store)
    assert first == FIRST
    assert read == {"prices": store._table(prices_source()).current_snapshot().snapshot_id}  # type: ignore[union-attr]
    later_changes(store)
    now, _ = training(store)
    assert now == [-1.0, 2.0, 3.0, 20.0]  # the new data is visible by default
    again, read_again = training(store, as_of=read)
    assert again == FIRST and read_again == read


def test_retraining_as_of_an_instant(store: IcebergOfflineStore) -> None:
    time.sleep(0.01)
    moment = datetime.now(UTC)
    time.sleep(0.01)
    later_changes(store)
    before, read = training(store, as_of=moment)
    assert before == FIRST
    for s in store._table(prices_source()).snapshots():
        if s.snapshot_id == read["prices"]:
            assert s.timestamp_ms <= moment.timestamp() * 1000
    # A naive instant is UTC; any zone is the same instant.
    assert training(store, as_of=moment.replace(tzinfo=None))[0] == FIRST
    assert training(store, as_of=moment.astimezone(datetime.now().astimezone().tzinfo))[0] == FIRST


def test_as_of_a_snapshot_in_between(store: IcebergOfflineStore) -> None:
    first_snapshot = store._table(prices_source()).snapshots()[0].snapshot_id
    out, read = training(store, as_of={"prices": first_snapshot})
    assert out == [1.0, 2.0, 1.0, 2.0] and read == {"prices": first_snapshot}


def test_as_of_errors_name_what_is_wrong(store: IcebergOfflineStore) -> None:
    with pytest.raises(RequestError, match="no snapshot 12345"):
        training(store, as_of={"prices": 12345})
    with pytest.raises(RequestError, match="'prices'"):
        training(store, as_of={"other": 1})
    with pytest.raises(RequestError, match="integer id"):
        training(store, as_of={"prices": "latest"})
    with pytest.raises(RequestError, match="had no snapshot then"):
        training(store, as_of=datetime(2000, 1, 1, tzinfo=UTC))
