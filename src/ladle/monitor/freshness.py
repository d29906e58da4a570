"""Freshness SLOs: how old is the newest event of each view, and is that older than the view allows?

A view's SLO is its tag ``ladle.freshness_slo`` (a duration: ``90s``, ``15m``, ``3h``, ``2d``,
combinations such as ``1h30m``, or plain seconds), else ``monitoring.freshness_slo_seconds``;
without either the view is reported but never breaches. :func:`slo_tag` writes the tag from a
``timedelta``::

    FeatureView(..., tags={**slo_tag(timedelta(hours=3))})

The newest event is measured in both stores: offline, the newest event time of the view's source
up to now; online, the newest event time the online store returns for the entities the offline
store knows (at most ``max_entities`` of them, the most recently updated first). A view served
online is judged on its online age (what models get); an offline-only view on its offline age.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import FeatureView
from ladle.errors import DefinitionError
from ladle.registry.reports import ReportJournal
from ladle.types import EVENT_TIMESTAMP, FieldStatus

if TYPE_CHECKING:
    from ladle.monitor.monitored import MonitoredStore

SLO_TAG = "ladle.freshness_slo"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DEFAULT_MAX_ENTITIES = 10_000


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``, ``"1w"`` or plain seconds (``"3600"``) as a timedelta."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise DefinitionError(
                f"{text!r} is not a duration; write e.g. 90s, 15m, 3h, 1h30m, 2d or seconds"
            ) from None
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if seconds <= 0:
        raise DefinitionError(f"duration {text!r} must be positive")
    return timedelta(seconds=seconds)


def slo_tag(slo: timedelta) -> dict[str, str]:
    """The tag declaring a freshness SLO of ``slo`` on a feature view."""
    if not isinstance(slo, timedelta) or slo <= timedelta(0):
        raise DefinitionError(f"a freshness SLO must be a positive datetime.timedelta, got {slo!r}")
    return {SLO_TAG: f"{slo.total_seconds():g}s"}


def view_slo(view: FeatureView, default_seconds: float | None) -> timedelta | None:
    """The view's freshness SLO: its tag, else the configured default, else None."""
    raw = view.tags.get(SLO_TAG)
    if raw is not None:
        try:
            return parse_duration(raw)
        except DefinitionError as exc:
            raise DefinitionError(f"feature view '{view.name}': tag {SLO_TAG}: {exc}") from None
    return timedelta(seconds=default_seconds) if default_seconds else None


@dataclass(frozen=True)
class ViewFreshness:
    """One view's freshness at ``checked_at``."""

    view: str
    checked_at: datetime
    slo: timedelta | None
    newest_offline: datetime | None
    newest_online: datetime | None
    judged_on: str

    @property
    def newest_event(self) -> datetime | None:
        """The newest event of the store the view is judged on."""
        return self.newest_online if self.judged_on == "online" else self.newest_offline

    @property
    def age_seconds(self) -> float | None:
        """Seconds from the newest event to ``checked_at`` (None when there is no event)."""
        newest = self.newest_event
        return None if newest is None else max(0.0, (self.checked_at - newest).total_seconds())

    @property
    def breach(self) -> bool:
        """Whether the view has an SLO and its newest event is older than it (or missing)."""
        if self.slo is None:
            return False
        age = self.age_seconds
        return age is None or age > self.slo.total_seconds()

    def to_payload(self) -> dict[str, Any]:
        """This view's entry of a ``freshness`` report payload."""
        return {
            "newest_event": _iso(self.newest_event),
            "age_seconds": self.age_seconds,
            "slo_seconds": self.slo.total_seconds() if self.slo is not None else None,
            "breach": self.breach,
            "judged_on": self.judged_on,
            "online": {
                "newest_event": _iso(self.newest_online),
                "age_seconds": _age(self.checked_at, self.newest_online),
            },
            "offline": {
                "newest_event": _iso(self.newest_offline),
                "age_seconds": _age(self.checked_at, self.newest_offline),
            },
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _age(now: datetime, value: datetime | None) -> float | None:
    return None if value is None else max(0.0, (now - value).total_seconds())


def check_freshness(
    store: MonitoredStore,
    views: Sequence[str] | None = None,
    now: datetime | None = None,
    record: bool = True,
    max_entities: int = DEFAULT_MAX_ENTITIES,
) -> list[ViewFreshness]:
    """Measure each view (default: every view), store one ``freshness`` report per view, export the metrics."""
    checked_at = now or datetime.now(UTC)
    snapshot = store.snapshot()
    chosen = [snapshot.feature_view(n) for n in views] if views else list(snapshot.feature_views.values())
    default = store.config.monitoring.freshness_slo_seconds
    results = []
    for view in chosen:
        slo = view_slo(view, default)
        latest = _latest_rows(store, view, checked_at)
        newest_offline = _max_time(latest)
        newest_online = _newest_online(store, view, latest, max_entities) if view.online else None
        results.append(
            ViewFreshness(
                view.name, checked_at, slo, newest_offline, newest_online, "online" if view.online else "offline"
            )
        )
    if record:
        journal = ReportJournal.open(store.config.registry, store.project, store.repo_path)
        try:
            for r in results:
                status = "breach" if r.breach else "ok"
                journal.record("freshness", r.view, status, {"views": {r.view: r.to_payload()}}, window_end=checked_at)
        finally:
            journal.close()
    return results


def _latest_rows(store: MonitoredStore, view: FeatureView, now: datetime) -> pa.Table | None:
    batches = list(store.offline_store.pull_latest(view, _EPOCH, now))
    return pa.Table.from_batches(batches) if batches else None


def _max_time(table: pa.Table | None) -> datetime | None:
    if table is None or table.num_rows == 0:
        return None
    newest = pc.max(table.column(EVENT_TIMESTAMP)).as_py()
    return newest.astimezone(UTC) if newest is not None else None


def _newest_online(store: MonitoredStore, view: FeatureView, latest: pa.Table | None, limit: int) -> datetime | None:
    if latest is None or latest.num_rows == 0 or not view.features or not view.join_keys:
        return None
    order = pc.sort_indices(latest, sort_keys=[(EVENT_TIMESTAMP, "descending")])
    keys = latest.take(order).slice(0, limit).select(view.join_keys)
    rows = {k: keys.column(k).to_pylist() for k in view.join_keys}
    response = store.get_online_features([f"{view.name}:{view.features[0].name}"], rows)
    index = response.feature_names.index(view.features[0].name)
    seen = [
        ts
        for ts, status in zip(response.event_timestamps[index], response.statuses[index], strict=True)
        if ts and status in (FieldStatus.PRESENT, FieldStatus.OUTSIDE_MAX_AGE, FieldStatus.NULL_VALUE)
    ]
    return _EPOCH + timedelta(microseconds=max(seen)) if seen else None
