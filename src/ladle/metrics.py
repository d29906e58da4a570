"""Prometheus metrics shared by the library, the scheduler and the server (names from Feast).

Defined once, in the default ``prometheus_client`` registry, so whatever process exposes
``/metrics`` (the feature server, ``ladle schedule``) reports them.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: ``feast_materialization_duration{feature_view}``, in seconds, the name our dashboards use (Feast's
#: own server calls it ``feast_materialization_duration_seconds``). Buckets span a quick
#: incremental run to an hour-long backfill.
MATERIALIZATION_DURATION = Histogram(
    "feast_materialization_duration",
    "Time taken by one successful materialization of one feature view.",
    ["feature_view"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)


def observe_materialization(view: str, seconds: float) -> None:
    """Record how long one materialization of ``view`` took."""
    MATERIALIZATION_DURATION.labels(feature_view=view).observe(seconds)


#: ``ladle_lineage_events_total{event_type}``: OpenLineage events sent (START, RUNNING, COMPLETE, FAIL).
LINEAGE_EVENTS = Counter("ladle_lineage_events", "OpenLineage run events sent.", ["event_type"])
#: ``ladle_lineage_emit_failures_total{transport}``: events that could not be built, queued or sent.
LINEAGE_EMIT_FAILURES = Counter(
    "ladle_lineage_emit_failures", "OpenLineage run events lost (send failed or queue full).", ["transport"]
)
