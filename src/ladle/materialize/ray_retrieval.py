"""Historical retrieval on the Ray engine: entity-hash partitioned point-in-time joins as Ray tasks.

The driver validates the frame as usual (``ladle.retrieval.historical``), cuts its rows by the hash
of the first view's join keys (:mod:`ladle.offline.hashing`), and sends each part to a task that
opens the offline store from the config and runs the store's own join on its part (so the SQL, the
ttl and tie-break rules, Iceberg's scan planning and computed stream views are exactly the local
engine's; the part's entity ids restrict the source rows its ASOF join holds, and within a task
the join is itself bounded by ``materialization.memory_budget``). Parts are gathered in the driver
and put back in the frame's row order. Iceberg sources are pinned once, in the driver, so every
task reads the same snapshots (``job.snapshots``).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, FeatureView
from ladle.definitions.refs import ViewSelection
from ladle.materialize.ray_engine import RayEngine, _peak_rss_mb, _portable, bound
from ladle.offline.hashing import ENTITY_PART, EntityPart, HashRange, key_type

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from ladle.definitions.saved_dataset import ValidationReference
    from ladle.offline.base import AsOf, OfflineStore, RetrievalJob


@dataclass(frozen=True)
class PartReport:
    """One retrieval task: its part, entity rows, seconds and worker."""

    part: int
    rows: int
    seconds: float
    pid: int
    peak_rss_mb: float


@dataclass
class RayRetrievalJob:
    """A retrieval run as Ray tasks when its result is first asked for (then kept)."""

    engine: RayEngine = field(repr=False)
    entity: pa.Table = field(repr=False)  # the whole frame: a repr names its size instead
    timestamp_column: str
    selections: list[ViewSelection]
    full_feature_names: bool
    as_of: Any
    snapshots: Mapping[str, int] = field(default_factory=dict)
    reports: list[PartReport] = field(default_factory=list)
    _result: pa.Table | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __repr__(self) -> str:
        views = [s.view.name for s in self.selections]
        return f"RayRetrievalJob(rows={self.entity.num_rows}, views={views}, tasks={len(self.reports) or None})"

    @property
    def sql(self) -> str:
        """Each task runs the offline store's own point-in-time query over its part."""
        return "-- ray: the offline store's point-in-time join, per entity-hash part"

    def to_arrow(self) -> pa.Table:
        """Run the tasks and return the result in the frame's row order."""
        with self._lock:
            if self._result is None:
                self._result = self._run()
            return self._result

    def to_df(self, validation_reference: ValidationReference | None = None) -> pd.DataFrame:
        """The result as pandas (checked against ``validation_reference``, if given:
        ValidationFailed when it does not match)."""
        from ladle.offline.validation import check

        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return check(frame, validation_reference)

    def to_parquet(self, path: str | Path) -> None:
        """Write the result to a Parquet file (temp file, then renamed)."""
        import pyarrow.parquet as pq

        target = Path(path)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(self.to_arrow(), tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _run(self) -> pa.Table:
        ray = self.engine.connect()
        k = self.engine.partitions(ray)
        parts = part_ids(self.entity, self.selections, k)
        cut = [(p, np.flatnonzero(parts == p)) for p in range(k)]
        cut = [(p, i) for p, i in cut if len(i)]
        indices = [i for _, i in cut]
        task = ray.remote(_retrieve_part).options(max_retries=self.engine.settings.max_retries, num_cpus=1)
        selections = [_portable_selection(s) for s in self.selections]
        refs = [
            task.remote(
                self.engine.config, p, self.entity.take(pa.array(idx)), self.timestamp_column, selections,
                self.full_feature_names, self.as_of, entity_part(self.selections, k, p),
            )
            for p, idx in cut
        ]  # fmt: skip
        results: list[tuple[pa.Table, PartReport]] = ray.get(refs)
        self.reports[:] = [r for _, r in results]
        table = pa.concat_tables([t for t, _ in results])
        order = np.concatenate(indices)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return table.take(pa.array(inverse))


def part_ids(entity: pa.Table, selections: Sequence[ViewSelection], k: int) -> np.ndarray:
    """The part (0..k-1) of each entity row: the hash of the first keyed view's join keys, modulo ``k``."""
    import duckdb

    keyed = next((s for s in selections if s.view.join_keys), None)
    if keyed is None or k <= 1:
        return np.arange(entity.num_rows) % max(k, 1)
    view = keyed.view
    cols = keyed.entity_columns()
    frame = entity.select(cols)
    keys = ", ".join(f'CAST("{c}" AS {key_type(f.dtype)})' for c, f in zip(cols, view.entity_columns, strict=True))
    con = duckdb.connect(":memory:")
    try:
        con.register("__f", frame)  # insertion order is kept (the default): one id per row, in order
        ids: np.ndarray = con.sql(f"SELECT (hash({keys}) % {k})::BIGINT AS p FROM __f").fetchnumpy()["p"]
    finally:
        con.close()
    return np.asarray(ids)


def entity_part(selections: Sequence[ViewSelection], k: int, p: int) -> EntityPart | None:
    """What part ``p`` of :func:`part_ids`'s cut holds: the entities of hash range ``[p, p+1)`` of ``k`` of
    the first keyed view's entity columns (None when the frame is not cut by hash)."""
    keyed = next((s for s in selections if s.view.join_keys), None)
    if keyed is None or k <= 1:
        return None
    types = tuple(key_type(f.dtype) for f in keyed.view.entity_columns)
    return EntityPart(tuple(keyed.entity_columns()), types, HashRange(k, p, p + 1))


def _portable_selection(sel: ViewSelection) -> ViewSelection:
    from dataclasses import replace

    return replace(sel, view=_portable(sel.view))


def _retrieve_part(
    config: RepoConfig,
    n: int,
    entity: pa.Table,
    timestamp_column: str,
    selections: list[ViewSelection],
    full_feature_names: bool,
    as_of: Any,
    part: EntityPart | None = None,
) -> tuple[pa.Table, PartReport]:
    """One Ray task: the store's own point-in-time join of one part of the frame, the sources of the views
    keyed like the cut filtered to the part's entity hashes in their scans (``part``)."""
    from dataclasses import replace

    from ladle.offline.base import open_offline_store

    began = time.perf_counter()
    selections = [replace(s, view=bound(s.view, config)) for s in selections]
    store = open_offline_store(config)
    token = ENTITY_PART.set(part)
    try:
        if as_of:
            job = store.historical(entity, timestamp_column, selections, full_feature_names, as_of=as_of)
        else:
            job = store.historical(entity, timestamp_column, selections, full_feature_names)
        table = job.to_arrow()
    finally:
        ENTITY_PART.reset(token)
        close = getattr(store, "close", None)
        if callable(close):
            close()
    return table, PartReport(n, entity.num_rows, time.perf_counter() - began, os.getpid(), _peak_rss_mb())


class RayOfflineStore:
    """The configured offline store with ``historical`` run on Ray; everything else is the store's own."""

    config_class: ClassVar[type[StrictModel]] = StrictModel

    def __init__(self, store: OfflineStore, engine: RayEngine) -> None:
        self.store = store
        self.engine = engine

    def historical(
        self,
        entity_df: pa.Table,
        timestamp_column: str,
        selections: Sequence[ViewSelection],
        full_feature_names: bool,
        as_of: AsOf | None = None,
    ) -> RetrievalJob:
        """The point-in-time join as Ray tasks; checked and pinned here, before any task runs."""
        # the local store checks the request and pins the snapshots (the job is built, never run)
        first = entity_df.slice(0, 1)
        probe = (
            self.store.historical(first, timestamp_column, selections, full_feature_names)
            if as_of is None
            else self.store.historical(first, timestamp_column, selections, full_feature_names, as_of=as_of)
        )
        snapshots = dict(getattr(probe, "snapshots", {}) or {})
        pinned: Mapping[str, int] | datetime | None = snapshots or None
        return RayRetrievalJob(
            self.engine, entity_df, timestamp_column, list(selections), full_feature_names, pinned, snapshots
        )

    def source_schema(self, source: DataSource) -> pa.Schema:
        """The store's own."""
        return self.store.source_schema(source)

    def pull_latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """The store's own."""
        return self.store.pull_latest(view, start, end, batch_rows)

    def pull_all(self, view: FeatureView, start: datetime, end: datetime) -> Iterator[pa.RecordBatch]:
        """The store's own."""
        return self.store.pull_all(view, start, end)

    def append(self, source: DataSource, rows: pa.Table) -> int:
        """The store's own."""
        return self.store.append(source, rows)
