"""Running drift: read a window, compare it with a saved baseline, store the report (metrics derive from it).

Two kinds of window (``source``):

* ``materialized``: the offline store's rows of each view of the baseline with event time in the
  window (what materialization loaded, or will load, online); one report per view (subject: the view);
* ``served``: the feature log of a feature service (``<view>__<feature>`` columns of the log
  source, ``log_time`` in the window); one report for the service (subject: the service).

The window's rows are loaded into memory (as Arrow tables): size
windows to what one process holds comfortably.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import DataSource, FeatureView, Field
from ladle.errors import RequestError
from ladle.monitor.baseline import Baseline
from ladle.monitor.baseline_store import BaselineStore
from ladle.monitor.drift import Thresholds, compare_feature, thresholds_for
from ladle.registry.reports import ReportJournal
from ladle.times import as_utc
from ladle.types import dtype_from_arrow

if TYPE_CHECKING:
    from ladle.monitor.monitored import MonitoredStore
    from ladle.offline.base import OfflineStore

WindowSource = Literal["materialized", "served"]
#: The feature log's column naming the A/B arm that served a row (null without a split).
VARIANT = "variant"


@dataclass(frozen=True)
class DriftResult:
    """One drift report: about a view (materialized window) or a feature service (served window)."""

    subject: str
    status: Literal["ok", "breach"]
    payload: dict[str, Any]
    report_id: int | None = None
    breached: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no feature breached."""
        return self.status == "ok"


def materialized_window(
    offline: OfflineStore, views: Mapping[str, FeatureView], baseline: Baseline, start: datetime, end: datetime
) -> dict[str, dict[str, pa.ChunkedArray]]:
    """The offline rows in ``[start, end]`` of each view of the baseline: ``{view: {feature: values}}``."""
    out: dict[str, dict[str, pa.ChunkedArray]] = {}
    for view_name in baseline.views:
        view = views[view_name]
        table = _concat(offline.pull_all(view, start, end))
        out[view_name] = {
            ref.split(":", 1)[1]: _column(table, ref.split(":", 1)[1])
            for ref in baseline.features
            if ref.startswith(f"{view_name}:")
        }
    return out


def served_window(
    offline: OfflineStore,
    log_source: DataSource,
    baseline: Baseline,
    start: datetime,
    end: datetime,
    variant: str | None = None,
) -> dict[str, dict[str, pa.ChunkedArray]]:
    """The logged values in ``[start, end]`` (by ``log_time``) of the baseline's features, by view.

    With ``variant``, only the rows an A/B split served from that arm (column ``variant``).
    """
    schema = offline.source_schema(log_source)
    wanted = {ref: ref.replace(":", "__", 1) for ref in baseline.features}
    present = [c for c in wanted.values() if c in schema.names]
    if variant is not None:
        if VARIANT not in schema.names:
            raise RequestError(f"the feature log has no '{VARIANT}' column to select variant {variant!r} by")
        present.append(VARIANT)
    if not present:
        raise RequestError(
            f"the feature log has none of the baseline's features (looked for {sorted(wanted.values())})"
        )
    reader = FeatureView(
        name="feature_log_reader",
        source=log_source,
        entities=[],
        schema=[Field(name=c, dtype=dtype_from_arrow(schema.field(c).type)) for c in present],
    )
    table = _concat(offline.pull_all(reader, start, end))
    if table is not None and variant is not None:
        table = table.filter(pc.equal(table.column(VARIANT), variant))
    out: dict[str, dict[str, pa.ChunkedArray]] = {}
    for ref, column in wanted.items():
        view, feature = ref.split(":", 1)
        out.setdefault(view, {})[feature] = _column(table, column)
    return out


def _concat(batches: Any) -> pa.Table | None:
    collected = list(batches)
    return pa.Table.from_batches(collected) if collected else None


def _column(table: pa.Table | None, name: str) -> pa.ChunkedArray:
    if table is None or name not in table.column_names:
        return pa.chunked_array([], pa.null())
    return table.column(name)


def compare(
    baseline: Baseline,
    window: Mapping[str, Mapping[str, pa.ChunkedArray]],
    views: Mapping[str, FeatureView],
    defaults: Thresholds,
) -> dict[str, dict[str, Any]]:
    """Drift entries of each feature in ``window`` (``{view: {feature: values}}``), keyed ``view:feature``."""
    out: dict[str, dict[str, Any]] = {}
    for view_name, columns in window.items():
        for feature, values in columns.items():
            ref = f"{view_name}:{feature}"
            thresholds = thresholds_for(defaults, views.get(view_name), feature)
            out[ref] = compare_feature(baseline.features[ref], values, thresholds)
    return out


def run_drift(
    store: MonitoredStore,
    baseline_name: str,
    start: datetime,
    end: datetime,
    source: WindowSource = "materialized",
    feature_service: str | None = None,
    record: bool = True,
    views: Sequence[str] | None = None,
    variant: str | None = None,
) -> list[DriftResult]:
    """Compare the window ``[start, end]`` with baseline ``baseline_name``; store and export the results.

    ``views`` limits the comparison to the baseline's features of those views (default: all);
    ``variant`` (served windows only) to the rows one arm of an A/B split served.
    """
    start, end = as_utc(start), as_utc(end)
    if start >= end:
        raise RequestError(f"the drift window is empty: start {start.isoformat()} is not before end {end.isoformat()}")
    baselines = BaselineStore.open(store.config.registry, store.project, store.repo_path)
    try:
        baseline = baselines.load(baseline_name)
    finally:
        baselines.close()
    if views is not None:
        baseline = _only_views(baseline, views)
    snapshot = store.snapshot()
    found = {name: snapshot.feature_view(name) for name in baseline.views}
    defaults = Thresholds.from_config(store.config.monitoring)
    groups: list[tuple[str, dict[str, dict[str, pa.ChunkedArray]]]]
    if source == "served":
        if feature_service is None:
            raise RequestError("drift over served values needs the feature service whose log to read")
        snapshot.feature_service(feature_service)
        log = _log_source(store, feature_service)
        window = served_window(store.offline_store, log, baseline, start, end, variant)
        groups = [(feature_service, window)]
    elif variant is not None:
        raise RequestError("a variant selects rows of the feature log: use it with source='served'")
    elif source == "materialized":
        window = materialized_window(store.offline_store, found, baseline, start, end)
        groups = [(view, {view: cols}) for view, cols in window.items()]
    else:
        raise RequestError(f"drift source must be 'materialized' or 'served', got {source!r}")
    results = []
    for subject, group in groups:
        entries = compare(baseline, group, found, defaults)
        breached = sorted(ref for ref, e in entries.items() if e["breach"])
        payload = {
            "baseline": baseline.name,
            "baseline_created_at": baseline.created_at.isoformat(),
            "source": source,
            "variant": variant,
            "window": {"start": start.isoformat(), "end": end.isoformat()},
            "features": entries,
        }
        status: Literal["ok", "breach"] = "breach" if breached else "ok"
        report_id = None
        if record:
            report_id = _record(store, subject, status, payload, start, end)
        results.append(DriftResult(subject, status, payload, report_id, breached))
    return results


def _only_views(baseline: Baseline, views: Sequence[str]) -> Baseline:
    unknown = sorted(set(views) - set(baseline.views))
    if unknown:
        raise RequestError(f"baseline '{baseline.name}' has no features of {unknown}; it covers {baseline.views}")
    kept = {ref: p for ref, p in baseline.features.items() if ref.split(":", 1)[0] in views}
    return replace(baseline, features=kept)


def _log_source(store: MonitoredStore, service: str) -> DataSource:
    from ladle.monitor.feature_log import log_source

    return log_source(store, service)  # type: ignore[arg-type]


def _record(
    store: MonitoredStore, subject: str, status: str, payload: dict[str, Any], start: datetime, end: datetime
) -> int:
    journal = ReportJournal.open(store.config.registry, store.project, store.repo_path)
    try:
        return journal.record("drift", subject, status, payload, window_start=start, window_end=end)
    finally:
        journal.close()
