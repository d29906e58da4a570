"""Prometheus metrics shared by the library, the scheduler and the server (names from Feast).

Defined once, in the default ``prometheus_client`` registry, so whatever process exposes
``/metrics`` (the feature server, ``ladle schedule``) reports them.
"""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

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


# -- monitoring (ladle.monitor: drift, skew, freshness); set by each run, in whichever process runs it.
FEATURE_DRIFT_SCORE = Gauge(
    "ladle_feature_drift_score",
    "Last drift score of a feature against its baseline (metric: psi, ks, chi2_p, null_rate_delta, out_of_range).",
    ["view", "feature", "metric"],
)
FEATURE_DRIFT_BREACH = Gauge(
    "ladle_feature_drift_breach",
    "1 when the last drift run found the feature past a threshold, else 0.",
    ["view", "feature"],
)
SKEW_RATE = Gauge(
    "ladle_online_offline_skew_rate",
    "Share of sampled entities whose online value differed from the point-in-time offline value (last audit).",
    ["view", "feature"],
)
FRESHNESS_AGE = Gauge(
    "ladle_feature_freshness_age_seconds",
    "Age of a view's newest event at the last freshness check (online when the view is online, else offline).",
    ["view"],
)
FRESHNESS_SLO_BREACH = Gauge(
    "ladle_feature_freshness_slo_breach",
    "1 when the view's newest event is older than its freshness SLO (or there is none), else 0.",
    ["view"],
)
MONITOR_METRIC_NAMES: tuple[str, ...] = tuple(
    m._name for m in (FEATURE_DRIFT_SCORE, FEATURE_DRIFT_BREACH, SKEW_RATE, FRESHNESS_AGE, FRESHNESS_SLO_BREACH)
)
