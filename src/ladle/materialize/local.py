"""The local materialization engine (Feast's rules; docs/online.md, "Materialization").

For each online view: the offline store yields the newest row per entity with
``start <= event_ts <= end`` (created timestamp breaks ties) as bounded Arrow batches (in
entity-hash chunks when the entities would not fit ``memory_budget``: :mod:`.partitions`); each batch
is written to the online store (which keeps the newest event per entity whatever the order); only
when every batch is written is the interval recorded in the registry, which moves the view's
watermark to ``max(end)``. A failure records nothing, so the same command can simply be run again;
a second run of the same window changes nothing.

``materialize_incremental(end)`` starts each view at its watermark, or at ``end - ttl`` on the first
run (``end - 52 weeks`` when ttl is 0). It never looks behind the watermark: rows that arrive late
in the offline store with older event times are loaded by a ranged
:meth:`Materializer.materialize` over their window (the online store still keeps only the newest
event per entity).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.errors import RegistryError, RequestError
from ladle.materialize.partitions import check_budget, chunked_latest, partitioned_pull, prefetched
from ladle.metrics import observe_materialization
from ladle.online.base import BatchWriter
from ladle.registry.base import RunRecorder
from ladle.times import to_utc

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore
    from ladle.online.base import OnlineStore
    from ladle.registry.base import Registry

log = logging.getLogger(__name__)
#: Look-back of a first incremental run of a view with no ttl (Feast's choice).
NO_TTL_LOOKBACK = timedelta(weeks=52)


@dataclass(frozen=True)
class ViewResult:
    """What one view's materialization did."""

    view: str
    start: datetime
    end: datetime
    rows_read: int
    rows_written: int
    skipped: bool = False


@dataclass(frozen=True)
class Materializer:
    """Moves the newest offline rows of views into the online store and records the watermarks.

    >>> Materializer(registry, offline_store, online_store, "carbon", batch_rows=50_000).materialize(start, end)
    """

    registry: Registry
    offline_store: OfflineStore
    online_store: OnlineStore
    project: str
    batch_rows: int
    #: gives registry views their transform functions (stream views computed offline); None: as read
    bind: Callable[[Iterable[FeatureView]], list[FeatureView]] | None = None
    #: bytes the pull may hold (``materialization.memory_budget``); None: pull every entity at once
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        if self.memory_budget is not None:
            check_budget(self.memory_budget)  # a ConfigError before any run starts

    def materialize(
        self,
        start: datetime | str,
        end: datetime | str,
        feature_views: Sequence[str] | None = None,
        progress: bool = False,
    ) -> list[ViewResult]:
        """Load the newest row per entity in ``[start, end]`` of each view (all online views if None)."""
        start, end = to_utc(start), to_utc(end)
        if end < start:
            raise RequestError(f"materialize: the end ({end.isoformat()}) is before the start ({start.isoformat()})")
        return [self._run(view, start, end, progress) for view in self._views(feature_views)]

    def materialize_incremental(
        self,
        end: datetime | str,
        feature_views: Sequence[str] | None = None,
        progress: bool = False,
    ) -> list[ViewResult]:
        """Materialize each view from its watermark (first run: ``end - ttl``) up to ``end``."""
        end = to_utc(end)
        results = []
        for view in self._views(feature_views):
            watermark = self.registry.watermark(view.name)
            lookback = view.ttl if view.ttl > timedelta(0) else NO_TTL_LOOKBACK
            start = to_utc(watermark) if watermark is not None else end - lookback
            if start >= end:
                log.info("materialize-incremental: '%s' is already materialized up to %s", view.name, start.isoformat())
                results.append(ViewResult(view.name, start, end, 0, 0, skipped=True))
                continue
            results.append(self._run(view, start, end, progress))
        return results

    def _views(self, names: Sequence[str] | None) -> list[FeatureView]:
        snapshot = self.registry.snapshot(allow_cache=False)
        if names is None:
            views = [v for v in snapshot.feature_views.values() if v.online]
        else:
            views = [snapshot.feature_view(n) for n in names]
            offline_only = [v.name for v in views if not v.online]
            if offline_only:
                raise RequestError(f"feature view(s) {offline_only} have online=False and cannot be materialized")
        return self.bind(views) if self.bind is not None else views

    def _run(self, view: FeatureView, start: datetime, end: datetime, progress: bool) -> ViewResult:
        registry = self.registry
        recorder = registry if isinstance(registry, RunRecorder) else None
        run_id = recorder.begin_run(view.name, start, end) if recorder is not None else None
        read = written = 0
        bar = _bar(view.name, progress)
        began = time.perf_counter()
        try:
            read, written = self._load(view, start, end, bar)
            registry.record_materialization(view.name, start, end, written)
        except BaseException as exc:  # record the failure, then let it propagate unchanged
            if recorder is not None and run_id is not None:
                _finish(recorder, run_id, "failed", written, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            bar.close()
        observe_materialization(view.name, time.perf_counter() - began)
        if recorder is not None and run_id is not None:
            _finish(recorder, run_id, "succeeded", written, "")
        log.info("materialized '%s' [%s, %s]: %d rows read, %d written", view.name, start, end, read, written)
        return ViewResult(view.name, start, end, read, written)

    def _load(self, view: FeatureView, start: datetime, end: datetime, bar: Any) -> tuple[int, int]:
        """Pull the window's newest rows and write them online; (rows read, rows written).

        Engines that run elsewhere (``ladle.materialize.ray_engine``) replace this step only: the
        run log and the watermark stay here, recorded once, after the whole load succeeded.
        """
        read = 0

        def tables() -> Iterator[pa.Table]:
            nonlocal read
            # the engine computes batch k+1 while the writer encodes and sends batch k
            for batch in prefetched(lambda: self._pull(view, start, end)):
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])
                    read += batch.num_rows
                    bar.update(batch.num_rows)

        online = self.online_store
        if isinstance(online, BatchWriter):
            written = online.write_batches(self.project, view, tables())
        else:
            written = sum(online.write(self.project, view, t) for t in tables())
        return read, written

    def _pull(self, view: FeatureView, start: datetime, end: datetime) -> Iterator[pa.RecordBatch]:
        """The window's newest rows: in entity-hash chunks when they would not fit the budget."""
        if self.memory_budget is not None:
            ranged = partitioned_pull(self.offline_store)
            if ranged is not None:
                chunks = chunked_latest(ranged, view, start, end, self.memory_budget, self.batch_rows)
                if chunks is not None:
                    return chunks
        return self.offline_store.pull_latest(view, start, end, batch_rows=self.batch_rows)


def _finish(registry: RunRecorder, run_id: int, status: str, rows: int, detail: str) -> None:
    try:
        registry.finish_run(run_id, status, rows, detail)
    except RegistryError as exc:  # the run log is advisory; the watermark is what counts
        log.warning("could not record the end of materialization run %s: %s", run_id, exc)


class _NoBar:
    """Stands in for the progress bar when there is none (tqdm is not even imported)."""

    def update(self, n: int) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


def _bar(view: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(desc=f"materialize {view}", unit=" rows", leave=True, dynamic_ncols=True)
