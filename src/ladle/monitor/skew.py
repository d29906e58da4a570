"""Online/offline skew audit: does the online store serve what a point-in-time join says it should?

For each feature view audited (a view, or every view of a feature service):

1. sample ``sample`` entities among those the offline store has rows for (seeded; the seed is
   in the report so a run can be repeated);
2. read them online and note the read time ``T``;
3. recompute the same features offline with ``get_historical_features``, each entity row stamped
   ``T`` (so the join takes the newest row at or before the read, within the view's ttl, exactly
   as the online read should have);
4. compare value by value. Floats match within ``skew_rel_tolerance`` / ``skew_abs_tolerance``;
   everything else must be equal. An online ``NOT_FOUND`` / ``OUTSIDE_MAX_AGE`` matches an offline
   null; a value on one side only is a mismatch.

A mismatch means the online store is behind (materialization late), ahead (rows pushed online
only), or simply different (a bug, a manual write). The report gives the rate per feature and
examples; the audit breaches when a rate exceeds ``monitoring.skew_max_rate``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.errors import FeatureViewNotFoundError, RequestError
from ladle.registry.reports import ReportJournal
from ladle.types import EVENT_TIMESTAMP, FieldStatus

if TYPE_CHECKING:
    from ladle.monitor.monitored import MonitoredStore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ABSENT = (FieldStatus.NOT_FOUND, FieldStatus.OUTSIDE_MAX_AGE)
DEFAULT_EXAMPLES = 20


@dataclass(frozen=True)
class SkewResult:
    """One audit: the report payload, its status, and every mismatch found (not only the examples)."""

    subject: str
    status: Literal["ok", "breach"]
    payload: dict[str, Any]
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    report_id: int | None = None

    @property
    def ok(self) -> bool:
        """Whether no feature's mismatch rate exceeded the allowed rate."""
        return self.status == "ok"


def audit_skew(
    store: MonitoredStore,
    target: str,
    sample: int | None = None,
    seed: int | None = None,
    record: bool = True,
    examples: int = DEFAULT_EXAMPLES,
) -> SkewResult:
    """Audit ``target`` (a feature view or feature service name); see the module docstring."""
    settings = store.config.monitoring
    size = sample if sample is not None else settings.skew_sample
    if size < 1:
        raise RequestError(f"a skew audit samples at least 1 entity, got {size}")
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    views = _views(store, target)
    features: dict[str, dict[str, Any]] = {}
    mismatches: list[dict[str, Any]] = []
    sampled = 0
    read_times = []
    for offset, view in enumerate(views):
        keys = _sample_keys(store, view, size, seed + offset)
        sampled += keys.num_rows
        if keys.num_rows == 0:
            features.update(
                {f"{view.name}:{f}": {"compared": 0, "mismatches": 0, "rate": 0.0} for f in view.feature_names}
            )
            continue
        read_time, counts, found = _audit_view(store, view, keys)
        read_times.append(read_time.isoformat())
        features.update(counts)
        mismatches.extend(found)
    max_rate = settings.skew_max_rate
    status: Literal["ok", "breach"] = "breach" if any(f["rate"] > max_rate for f in features.values()) else "ok"
    payload = {
        "sampled": sampled,
        "seed": seed,
        "read_times": read_times,
        "tolerance": {"rel": settings.skew_rel_tolerance, "abs": settings.skew_abs_tolerance},
        "max_rate": max_rate,
        "features": features,
        "examples": mismatches[:examples],
    }
    report_id = None
    if record:
        journal = ReportJournal.open(store.config.registry, store.project, store.repo_path)
        try:
            report_id = journal.record("skew", target, status, payload)
        finally:
            journal.close()
    return SkewResult(target, status, payload, mismatches, report_id)


def _views(store: MonitoredStore, target: str) -> list[FeatureView]:
    snapshot = store.snapshot()
    if target in snapshot.feature_views:
        views = [snapshot.feature_view(target)]
    elif target in snapshot.feature_services:
        names = dict.fromkeys(p.view_name for p in snapshot.feature_service(target).projections)
        views = [snapshot.feature_view(n) for n in names]
    else:
        raise FeatureViewNotFoundError(target, store.project, detail="A skew audit takes a feature view or service.")
    online = [v for v in views if v.online and v.join_keys]
    if not online:
        raise RequestError(f"'{target}' has no online feature view with entities to audit")
    return online


def _sample_keys(store: MonitoredStore, view: FeatureView, size: int, seed: int) -> pa.Table:
    batches = list(store.offline_store.pull_latest(view, _EPOCH, datetime.now(UTC)))
    if not batches:
        return pa.table({k: [] for k in view.join_keys})
    keys = pa.Table.from_batches(batches).select(view.join_keys)
    if keys.num_rows <= size:
        return keys
    chosen = sorted(random.Random(seed).sample(range(keys.num_rows), size))
    return keys.take(pa.array(chosen, pa.int64()))


def _audit_view(
    store: MonitoredStore, view: FeatureView, keys: pa.Table
) -> tuple[datetime, dict[str, dict[str, Any]], list[dict[str, Any]]]:
    refs = [f"{view.name}:{f}" for f in view.feature_names]
    rows = {k: keys.column(k).to_pylist() for k in view.join_keys}
    read_time = datetime.now(UTC)
    online = store.get_online_features(refs, rows, full_feature_names=True)
    entity_df = keys.append_column(EVENT_TIMESTAMP, pa.array([read_time] * keys.num_rows, pa.timestamp("us", "UTC")))
    offline = store.get_historical_features(entity_df, refs, full_feature_names=True).to_arrow()
    offline_index = {tuple(offline.column(k)[i].as_py() for k in view.join_keys): i for i in range(offline.num_rows)}
    settings = store.config.monitoring
    counts: dict[str, dict[str, Any]] = {}
    found: list[dict[str, Any]] = []
    for feature in view.feature_names:
        column = f"{view.name}__{feature}"
        at = online.feature_names.index(column)
        offline_values = offline.column(column).to_pylist()
        bad = 0
        for j in range(keys.num_rows):
            key = tuple(rows[k][j] for k in view.join_keys)
            status = FieldStatus(online.statuses[at][j])
            served = None if status in _ABSENT else online.values[at][j]
            expected = offline_values[offline_index[key]] if key in offline_index else None
            if _same(served, expected, settings.skew_rel_tolerance, settings.skew_abs_tolerance):
                continue
            bad += 1
            ts = online.event_timestamps[at][j]
            found.append(
                {
                    "view": view.name,
                    "feature": feature,
                    "entity": {k: _json(rows[k][j]) for k in view.join_keys},
                    "online": _json(served),
                    "online_status": status.name,
                    "online_event_timestamp": _iso_micros(ts),
                    "offline": _json(expected),
                    "read_time": read_time.isoformat(),
                }
            )
        n = keys.num_rows
        counts[f"{view.name}:{feature}"] = {"compared": n, "mismatches": bad, "rate": bad / n if n else 0.0}
    return read_time, counts, found


def _same(a: Any, b: Any, rel: float, abs_: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        try:
            x, y = float(a), float(b)
        except (TypeError, ValueError):
            return False
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)
    if isinstance(a, Sequence) and isinstance(b, Sequence) and not isinstance(a, (str, bytes)):
        return len(a) == len(b) and all(_same(x, y, rel, abs_) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return str(value)


def _iso_micros(micros: int) -> str | None:
    from datetime import timedelta

    return (_EPOCH + timedelta(microseconds=micros)).isoformat() if micros else None
