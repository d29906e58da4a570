"""Where Ladle's jobs meet lineage: the datasets and facts of apply, materialize, push, retrieval, ingest, stream.

Each helper returns the job's work unchanged when lineage is off, so a store without a
``lineage:`` block pays one attribute read. The callers (``FeatureStore``, ``ladle ingest``,
``ladle stream``) add one line each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ladle.definitions import FeatureService, FeatureView
from ladle.monitor.lineage_datasets import (
    LineageDataset,
    LineageRun,
    file_dataset,
    offline_dataset,
    online_dataset,
    stream_dataset,
    view_fields,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ladle.config import RepoConfig
    from ladle.definitions.saved_dataset import ValidationReference
    from ladle.materialize.local import ViewResult
    from ladle.monitor.lineage import Lineage
    from ladle.offline.base import RetrievalJob
    from ladle.registry.base import Registry, RegistrySnapshot
    from ladle.repo.plan import ApplyResult


class FeatureStore(Protocol):
    """What the helpers use of :class:`ladle.store.FeatureStore` (named here: the store imports this module)."""

    config: RepoConfig

    @property
    def lineage(self) -> Lineage:
        """The store's lineage emitter."""
        ...

    @property
    def registry(self) -> Registry:
        """The store's registry."""
        ...

    def snapshot(self, allow_cache: bool = True) -> RegistrySnapshot:
        """The current definitions."""
        ...


def _version(registry: Registry, view: str) -> int | None:
    try:
        versions = registry.history("feature_view", view)
    except Exception:  # a registry hiccup must not fail the job; the facet just lacks the version
        return None
    return versions[-1].version if versions else None


def _dedup(datasets: Sequence[LineageDataset]) -> list[LineageDataset]:
    seen: dict[tuple[str, str], LineageDataset] = {}
    for d in datasets:
        seen.setdefault((d.namespace, d.name), d)
    return list(seen.values())


def apply_work(store: FeatureStore, objects: Any, work: Callable[[], ApplyResult]) -> Callable[[], ApplyResult]:
    """``work`` (an apply) inside a lineage run: the views' sources in, their online tables out."""
    lineage = store.lineage
    if not lineage.enabled:
        return work
    views = [o for o in _objects(objects) if isinstance(o, FeatureView)]
    inputs = _dedup([offline_dataset(store.config, v) for v in views])
    outputs = [online_dataset(store.config, v) for v in views if v.online]

    def traced() -> ApplyResult:
        with lineage.run("apply", inputs, outputs) as run:
            result = work()
            run.facts.update(
                registryVersion=result.version,
                changes=[f"{d.action} {d.kind} {d.name}" for d in result.diffs],
                viewVersions={v.name: _version(store.registry, v.name) for v in views},
            )
        return result

    return traced


def _objects(objects: Any) -> list[Any]:
    from ladle.repo.plan import RepoContents

    if isinstance(objects, RepoContents):
        return [*objects.data_sources, *objects.feature_views]
    return list(objects)


def materialize_work(
    store: FeatureStore, views: Sequence[FeatureView], work: Callable[[], list[ViewResult]]
) -> Callable[[], list[ViewResult]]:
    """``work`` (a materialization, any engine) inside a lineage run: offline tables in, online tables out."""
    lineage = store.lineage
    if not lineage.enabled:
        return work
    config = store.config
    inputs = _dedup([offline_dataset(config, v) for v in views])
    outputs = [online_dataset(config, v) for v in views]
    names = {v.name: online_dataset(config, v).name for v in views}

    def traced() -> list[ViewResult]:
        with lineage.run("materialize", inputs, outputs, {"engine": config.batch_engine.type}) as run:
            results = work()
            per_view: dict[str, Any] = {}
            for r in results:
                run.rows[names.get(r.view, r.view)] = r.rows_written
                per_view[r.view] = {
                    "version": _version(store.registry, r.view),
                    "rowsRead": r.rows_read,
                    "rowsWritten": r.rows_written,
                    "start": r.start.isoformat(),
                    "watermark": r.end.isoformat(),
                    "skipped": r.skipped,
                }
            run.facts.update(rowsWritten=sum(r.rows_written for r in results), views=per_view)
        return results

    return traced


def push_work(store: FeatureStore, push_source: str, to: str, work: Callable[[], int]) -> Callable[[], int]:
    """``work`` (a push) inside a lineage run: the push source in, the fed views' tables out."""
    lineage = store.lineage
    if not lineage.enabled:
        return work
    config = store.config
    views = store.snapshot().views_fed_by(push_source)
    outputs: list[LineageDataset] = []
    if to in ("online", "online_and_offline"):
        outputs += [online_dataset(config, v) for v in views if v.online]
    if to in ("offline", "online_and_offline"):
        outputs += _dedup([offline_dataset(config, v) for v in views])
    fields = view_fields(views[0]) if views else ()
    inputs = [LineageDataset(f"ladle://{config.project}", f"push_source.{push_source}", fields)]

    def traced() -> int:
        with lineage.run("push", inputs, outputs, {"pushSource": push_source, "to": to}) as run:
            written = work()
            run.facts["rowsWritten"] = written
        return written

    return traced


class TracedRetrieval:
    """A historical retrieval job whose runs (``to_df``, ``to_arrow``, ``to_parquet``) are lineage runs."""

    def __init__(
        self,
        job: RetrievalJob,
        lineage: Lineage,
        inputs: list[LineageDataset],
        facts: dict[str, Any],
        fields: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._job = job
        #: the wrapped job's snapshot ids (Iceberg), as the protocol asks
        self.snapshots: Mapping[str, int] = job.snapshots
        self._lineage = lineage
        self._inputs = inputs
        self._facts = facts
        self._fields = fields

    @property
    def sql(self) -> str:
        """The wrapped job's query."""
        return self._job.sql

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    @contextmanager
    def _run(self, outputs: list[LineageDataset]) -> Iterator[LineageRun]:
        with self._lineage.run("get_historical_features", self._inputs, outputs, self._facts) as run:
            yield run

    def to_arrow(self) -> pa.Table:
        """Run and return the result as an Arrow table."""
        with self._run([]) as run:
            table = self._job.to_arrow()
            run.facts["rowsWritten"] = table.num_rows
        return table

    def to_df(self, validation_reference: ValidationReference | None = None) -> pd.DataFrame:
        """Run and return the result as a pandas DataFrame (checked against ``validation_reference``)."""
        with self._run([]) as run:
            frame = self._job.to_df(validation_reference=validation_reference)
            run.facts["rowsWritten"] = len(frame)
        return frame

    def to_parquet(self, path: str | Path) -> None:
        """Run and write the result to Parquet; the file is the run's output dataset."""
        out = file_dataset(path, self._fields)
        with self._run([out]) as run:
            self._job.to_parquet(path)
            try:
                import pyarrow.parquet as pq

                run.rows[out.name] = run.facts["rowsWritten"] = pq.ParquetFile(path).metadata.num_rows
            except Exception:  # a directory or remote path: the row count is optional
                pass


def retrieval_job(
    store: FeatureStore, job: RetrievalJob, features: Sequence[str] | FeatureService, full_names: bool
) -> RetrievalJob:
    """``job`` reporting its runs to lineage (the job itself when lineage is off)."""
    lineage = store.lineage
    if not lineage.enabled:
        return job
    from ladle.definitions.refs import resolve

    try:
        selections = resolve(store.snapshot(), features, full_names)
    except Exception:
        return job
    inputs = _dedup([offline_dataset(store.config, s.view) for s in selections])
    facts: dict[str, Any] = {
        "features": [f"{s.view.name}:{f}" for s in selections for f in s.features],
        "viewVersions": {s.view.name: _version(store.registry, s.view.name) for s in selections},
    }
    if isinstance(features, FeatureService):
        facts["featureService"] = features.name
    fields: dict[str, str] = {}
    for s in selections:
        fields.update({s.join_key_map.get(f.name, f.name): str(f.dtype) for f in s.view.entity_columns})
        names = s.output_names(full_names)
        fields.update({n: str(s.view.feature(f).dtype) for n, f in zip(names, s.features, strict=True)})
    return TracedRetrieval(job, lineage, inputs, facts, tuple(fields.items()))


def ingest_run(store: FeatureStore, ingestion: str, view: FeatureView) -> Any:
    """A lineage run around one ingestion (``ladle ingest``): its view's offline table out.

    Set ``run.facts["rowsWritten"]`` inside; the CLI does.
    """
    lineage = store.lineage
    if not lineage.enabled:
        return nullcontext(_NoRun())
    out = offline_dataset(store.config, view)
    return _ingest(lineage, ingestion, view, out)


@contextmanager
def _ingest(lineage: Lineage, ingestion: str, view: FeatureView, out: LineageDataset) -> Iterator[Any]:
    with lineage.run("ingest", [], [out], {"ingestion": ingestion, "featureView": view.name}) as run:
        yield _RowsSetter(run, out.name)


class _NoRun:
    def written(self, rows: int) -> None:
        """Nothing to record: lineage is off."""


class _RowsSetter:
    def __init__(self, run: LineageRun, name: str) -> None:
        self.run = run
        self.name = name

    def written(self, rows: int) -> None:
        self.run.rows[self.name] = rows
        self.run.facts["rowsWritten"] = rows


def stream_progress(registry: Any) -> dict[str, int]:
    """Totals so far of a stream process's counters (its :class:`~ladle.streaming.metrics.StreamMetrics` registry)."""
    totals = {"eventsRead": 0, "eventsAccepted": 0, "rowsWritten": 0, "deadLetters": 0}
    names = {
        "ladle_stream_events_total": "eventsRead",
        "ladle_stream_events_accepted_total": "eventsAccepted",
        "ladle_stream_offline_rows_total": "rowsWritten",
        "ladle_stream_dead_letters_total": "deadLetters",
    }
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name in names:
                totals[names[sample.name]] += int(sample.value)
    return totals


@contextmanager
def stream_run(
    store: FeatureStore, views: Sequence[FeatureView], group_id: str, metrics_registry: Any = None
) -> Iterator[None]:
    """``ladle stream``: START now, RUNNING every ``running_interval_seconds``, COMPLETE on stop, FAIL on crash.

    With the stream's ``metrics_registry`` the RUNNING and COMPLETE events carry its totals
    (events read and accepted, rows appended to the batch source, dead letters).
    """
    lineage = store.lineage
    if not lineage.enabled:
        yield
        return
    config = store.config
    inputs = _dedup([d for d in (stream_dataset(config, v) for v in views) if d is not None])
    outputs = [online_dataset(config, v) for v in views if v.online]
    outputs += _dedup([offline_dataset(config, v) for v in views])
    facts = {"groupId": group_id, "views": {v.name: {"version": _version(store.registry, v.name)} for v in views}}
    progress = (lambda: stream_progress(metrics_registry)) if metrics_registry is not None else None
    with lineage.run("stream", inputs, outputs, facts) as run, lineage.heartbeat(run, progress=progress):
        yield
