"""Materialization in bounded memory: the window's entities cut into ranges of entity-hash buckets.

Keeping the newest row per entity is a hash aggregate whose memory grows with the number of
entities in the window. When those would not fit the configured ``memory_budget``, the entities
are split by ``hash(join keys) % BUCKETS`` into contiguous bucket ranges, and each range (a
*chunk*) is pulled and written on its own; every entity falls in exactly one chunk, so the union
of the chunks is the unchunked result. Chunk sizes adapt: the first comes from an estimate of the
entities in the window (:meth:`PartitionedPull.estimate_entities`), later ones from the entities
per bucket observed so far. The next chunk's query runs while the current one is being written
(the engine's threads work while Python encodes), so at most two chunks are held at once, which
the sizing accounts for.

An offline store opts in by implementing :class:`PartitionedPull` (checked with ``isinstance``): the
DuckDB and Iceberg stores do (:mod:`ladle.offline.ranges`). Stores without it are pulled unchunked.
The buckets are those of :mod:`ladle.offline.hashing`, which partitioned historical retrieval and
the Ray engine use too.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.errors import ConfigError
from ladle.offline.hashing import BUCKETS, HashRange

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore

__all__ = [
    "BUCKETS",
    "ChunkPlanner",
    "HashRange",
    "PartitionedPull",
    "chunked_latest",
    "partitioned_pull",
    "prefetched",
]
#: Memory set aside from the budget for what is there before any data: the interpreter, the
#: libraries, the registry, the engine's scan buffers and the online writer's batches (measured:
#: ~225 MB of process before the pull, ~80-120 MB more for a 2-thread Parquet scan).
RESERVED_BYTES = 320 * 2**20
#: The least a budget must leave for data beyond that.
MIN_DATA_BYTES = 32 * 2**20
#: Working-set bytes of one entity in the two-phase newest-row pull (``ladle.offline.pull``): the
#: aggregate's keys, row id and ordering key, the join's row id, plus a little per column. Measured
#: with one pull thread (VmHWM of the process less the ~210 MB before the pull): 140 bytes for
#: W1b (one string key, 14 columns), 83 for an integer key and 6 columns; rounded up by ~1.5x.
ENTITY_BASE_BYTES = 96
ENTITY_COLUMN_BYTES = 8
#: Entities per chunk at most, whatever the budget: bounds one query's work before its first row is
#: written. Smaller chunks save little time (the next chunk's query overlaps the writes only when a
#: core is free) and cost a scan of the source each: W1b in 4 chunks ran ~1.6x slower on a busy
#: 2-core machine than in one, for ~120 MB less peak RSS; the budget decides.
MAX_CHUNK_ENTITIES = 4_194_304


@runtime_checkable
class PartitionedPull(Protocol):
    """Optional offline-store ability: pull the newest rows of one entity-hash range.

    ``pull_latest_range`` must return exactly the rows of ``pull_latest`` whose entity falls in
    the range; the hash only has to be stable within one materialization.
    """

    def estimate_entities(self, view: FeatureView, start: datetime, end: datetime) -> int:
        """A cheap estimate of the distinct entities with rows in ``[start, end]`` (may be rough)."""
        ...

    def pull_latest_range(
        self, view: FeatureView, start: datetime, end: datetime, part: HashRange, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """The newest row per entity of ``part`` with ``start <= event_ts <= end``, in batches."""
        ...


def partitioned_pull(store: OfflineStore) -> PartitionedPull | None:
    """The store's range pulls, or None when it has none (pull unchunked)."""
    return store if isinstance(store, PartitionedPull) else None


def entity_bytes(view: FeatureView) -> int:
    """Estimated working-set bytes per entity of the view's newest-row aggregate."""
    columns = len(view.join_keys) + len(view.features) + 2
    return ENTITY_BASE_BYTES + ENTITY_COLUMN_BYTES * columns


def check_budget(budget_bytes: int) -> None:
    """ConfigError unless the budget leaves room for data after :data:`RESERVED_BYTES`."""
    if budget_bytes < RESERVED_BYTES + MIN_DATA_BYTES:
        raise ConfigError(
            f"invalid configuration: materialization.memory_budget ({budget_bytes / 2**20:.0f} MB) is below the "
            f"{(RESERVED_BYTES + MIN_DATA_BYTES) // 2**20} MB a materialization needs (the process and the engine "
            "take ~320 MB before any data); raise it"
        )


def chunk_entities(view: FeatureView, budget_bytes: int) -> int:
    """Entities per chunk so that two chunks in flight fit the budget (at most MAX_CHUNK_ENTITIES)."""
    check_budget(budget_bytes)
    usable = budget_bytes - RESERVED_BYTES
    return max(1, min(MAX_CHUNK_ENTITIES, usable // (2 * entity_bytes(view))))


class ChunkPlanner:
    """Hands out bucket ranges of about ``target`` entities, learning the entities per bucket."""

    def __init__(self, estimated_entities: int, target: int, buckets: int = BUCKETS) -> None:
        self.buckets = buckets
        self.target = target
        self.next_lo = 0
        self.seen_buckets = 0
        self.seen_entities = 0
        self._density = max(estimated_entities, 1) / buckets

    def done(self) -> bool:
        """Whether every bucket has been handed out."""
        return self.next_lo >= self.buckets

    def next_range(self) -> HashRange:
        """The next range, sized from the entities per bucket known so far."""
        density = self._density
        if self.seen_buckets:
            # what the chunks so far held, but never below a quarter of the estimate (a skewed first chunk)
            density = max(self.seen_entities / self.seen_buckets, self._density / 4)
        width = max(1, math.floor(self.target / density)) if density > 0 else self.buckets
        lo, hi = self.next_lo, min(self.buckets, self.next_lo + width)
        self.next_lo = hi
        return HashRange(self.buckets, lo, hi)

    def observe(self, part: HashRange, entities: int) -> None:
        """A chunk held ``entities`` entities."""
        self.seen_buckets += part.hi - part.lo
        self.seen_entities += entities


def chunked_latest(
    pull: PartitionedPull, view: FeatureView, start: datetime, end: datetime, budget_bytes: int, batch_rows: int
) -> Iterator[pa.RecordBatch] | None:
    """The newest rows per entity chunk by chunk within the budget, or None when one chunk fits.

    The query of chunk k+1 runs in a helper thread while chunk k's batches are consumed.
    """
    if not view.join_keys:
        return None
    target = chunk_entities(view, budget_bytes)
    estimate = pull.estimate_entities(view, start, end)
    if estimate <= target:
        return None
    planner = ChunkPlanner(estimate, target)

    def start_pull(part: HashRange) -> Callable[[], Iterator[pa.RecordBatch]]:
        # the query (the aggregate) runs when the iterator is created: do that in the helper thread
        def run() -> Iterator[pa.RecordBatch]:
            return iter(pull.pull_latest_range(view, start, end, part, batch_rows))

        return run

    def chunks() -> Iterator[pa.RecordBatch]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ladle-pull") as pool:
            part = planner.next_range()
            pending: Future[Iterator[pa.RecordBatch]] | None = pool.submit(start_pull(part))
            while pending is not None:
                batches = pending.result()
                current = part
                pending = None
                if not planner.done():
                    part = planner.next_range()
                    pending = pool.submit(start_pull(part))
                rows = 0
                try:
                    for batch in batches:
                        rows += batch.num_rows
                        yield batch
                except BaseException:  # the writer failed or stopped: drop the next chunk's query
                    if pending is not None:
                        pending.cancel()
                    raise
                planner.observe(current, rows)

    return chunks()


#: Batches a :func:`prefetched` pull holds ready at most (50,000-row batches: a few MB each).
PREFETCH_BATCHES = 2


class _Failed:
    """The pull raised: carried to the consumer, which raises it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def prefetched(
    open_batches: Callable[[], Iterator[pa.RecordBatch]], depth: int = PREFETCH_BATCHES
) -> Generator[pa.RecordBatch, None, None]:
    """The batches of ``open_batches()``, opened and produced in a helper thread up to ``depth`` ahead of
    the consumer.

    The engine computes the next batch of a pull (DuckDB's streaming join, without the GIL) while the
    online writer encodes and sends the current one, instead of one after the other on one thread.
    The pull is opened in the helper too, so the whole query runs on one thread: DuckDB's allocator
    keeps an arena per thread, and a query started on one thread and streamed on another held both
    arenas' pages (W1b: ~40 MB more peak RSS). An error of the pull is raised in the consumer; a
    consumer that stops early (the writer failed) stops the helper, which closes the pull.
    """
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        end: object = _END
        batches: Iterator[pa.RecordBatch] | None = None
        try:
            batches = open_batches()
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            end = _Failed(exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        put(end)

    helper = threading.Thread(target=produce, name="ladle-pull-prefetch", daemon=True)
    helper.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        helper.join()
