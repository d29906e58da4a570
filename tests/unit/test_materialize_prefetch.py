"""The pull prefetch of materialization (``ladle.materialize.partitions.prefetched``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from ladle.materialize.partitions import prefetched


def _batches(n: int, log: list[str], fail_at: int | None = None) -> Iterator[pa.RecordBatch]:
    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"pull failed at {i}")
            log.append(f"made {i} in {threading.current_thread().name}")
            yield pa.record_batch({"x": [i, i]})
    finally:
        log.append("closed")


def test_every_batch_arrives_in_order_from_a_helper_thread() -> None:
    log: list[str] = []
    got = [b.column(0)[0].as_py() for b in prefetched(lambda: _batches(7, log))]
    assert got == list(range(7))
    assert all("ladle-pull-prefetch" in line for line in log[:-1])
    assert log[-1] == "closed"


def test_an_error_of_the_pull_is_raised_in_the_consumer_after_the_batches_before_it() -> None:
    log: list[str] = []
    got = []
    with pytest.raises(ValueError, match="pull failed at 3"):
        for b in prefetched(lambda: _batches(10, log, fail_at=3)):
            got.append(b.column(0)[0].as_py())
    assert got == [0, 1, 2]
    assert log[-1] == "closed"


def test_a_consumer_that_stops_early_stops_and_closes_the_pull() -> None:
    log: list[str] = []
    stream = prefetched(lambda: _batches(1000, log), depth=2)
    assert next(stream).column(0)[0].as_py() == 0
    stream.close()  # the writer failed: the generator is closed
    assert log[-1] == "closed"
    made = [line for line in log if line.startswith("made")]
    assert len(made) <= 4  # the one consumed, the queue's two, and one waiting to be put
    assert not any(t.name == "ladle-pull-prefetch" for t in threading.enumerate())


def test_an_empty_pull_ends_at_once() -> None:
    log: list[str] = []
    assert list(prefetched(lambda: _batches(0, log))) == []
    assert log == ["closed"]


def test_a_pull_that_fails_to_open_raises_in_the_consumer() -> None:
    def fail() -> Iterator[pa.RecordBatch]:
        raise OSError("no such file")

    with pytest.raises(OSError, match="no such file"):
        list(prefetched(fail))
