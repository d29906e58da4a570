"""``MonitorSchedule``: a drift, skew or freshness check run by the scheduler, declared like a materialization.

It is a :class:`~ladle.schedule.spec.Schedule` (same cron, time zone, catch-up, lease and run
journal), whose fire runs a check for each of its ``feature_views`` instead of materializing it:

* ``check="drift"``: compare the window ``[T - lookback, T]`` of each view with ``baseline``
  (materialized rows; or, with ``feature_service=``, that service's feature log);
* ``check="skew"``: audit each view (``sample`` entities);
* ``check="freshness"``: measure each view against its freshness SLO.

Each check stores its report and sets its metrics; a breach is a finding, not a failed run (the
run fails only when the check could not be made). ``catch_up`` defaults to ``"latest"``: after
downtime only the newest fire runs, since a check of a past moment is rarely worth repeating.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ladle.definitions import FeatureView
from ladle.definitions._common import common_args
from ladle.errors import DefinitionError
from ladle.schedule.spec import DEFAULT_MAX_CATCH_UP, CatchUp, Schedule

if TYPE_CHECKING:
    from ladle.schedule.execute import Materialize
    from ladle.store import FeatureStore

log = logging.getLogger(__name__)

Check = Literal["drift", "skew", "freshness"]
CHECKS: tuple[Check, ...] = ("drift", "skew", "freshness")


class MonitorSchedule(Schedule):
    """Run a monitoring ``check`` on ``feature_views`` every time ``cron`` fires.

    >>> MonitorSchedule(name="daily_price_drift", cron="30 2 * * *", check="drift",
    ...                 feature_views=["commodity_price_features"], baseline="training_2019",
    ...                 lookback=timedelta(days=1))
    MonitorSchedule(name='daily_price_drift', cron='30 2 * * *', check='drift')
    """

    def __init__(
        self,
        name: str,
        cron: str,
        check: Check,
        feature_views: Sequence[str | FeatureView],
        lookback: timedelta = timedelta(days=1),
        baseline: str | None = None,
        feature_service: str | None = None,
        sample: int | None = None,
        timezone: str = "UTC",
        catch_up: CatchUp = "latest",
        max_catch_up: int = DEFAULT_MAX_CATCH_UP,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        super().__init__(
            name, cron, feature_views, lookback, timezone, catch_up, max_catch_up, description, tags, owner
        )
        if check not in CHECKS:
            raise DefinitionError(f"monitor schedule '{name}': check must be one of {', '.join(CHECKS)}, got {check!r}")
        if check == "drift" and not baseline:
            raise DefinitionError(f"monitor schedule '{name}': a drift check needs baseline='<saved baseline name>'")
        if check != "drift" and (baseline or feature_service):
            raise DefinitionError(f"monitor schedule '{name}': baseline and feature_service are for drift checks only")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            raise DefinitionError(f"monitor schedule '{name}': sample must be a positive int, got {sample!r}")
        self.check: Check = check
        self.baseline = baseline
        self.feature_service = feature_service
        self.sample = sample

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready description: the schedule's, plus the check and its options."""
        return {
            **super().to_spec(),
            "check": self.check,
            "baseline": self.baseline,
            "feature_service": self.feature_service,
            "sample": self.sample,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> MonitorSchedule:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            cron=spec["cron"],
            check=spec["check"],
            feature_views=spec["feature_views"],
            lookback=timedelta(seconds=spec["lookback_seconds"]),
            baseline=spec.get("baseline"),
            feature_service=spec.get("feature_service"),
            sample=spec.get("sample"),
            timezone=spec.get("timezone", "UTC"),
            catch_up=spec.get("catch_up", "latest"),
            max_catch_up=spec.get("max_catch_up", DEFAULT_MAX_CATCH_UP),
            **common_args(spec),
        )

    def __repr__(self) -> str:
        return f"MonitorSchedule(name={self.name!r}, cron={self.cron.expression!r}, check={self.check!r})"


def monitor_job(store: FeatureStore, schedule: MonitorSchedule) -> Materialize:
    """The per-view callable :func:`ladle.schedule.execute.run_fire` calls for a monitor schedule."""

    def run(start: datetime, end: datetime, views: Sequence[str]) -> None:
        breached: list[str] = []
        if schedule.check == "drift":
            from ladle.monitor.drift_run import run_drift

            assert schedule.baseline is not None
            source: Literal["materialized", "served"] = "served" if schedule.feature_service else "materialized"
            results = run_drift(
                store, schedule.baseline, start, end, source, schedule.feature_service, views=list(views)
            )
            breached = [ref for r in results for ref in r.breached]
        elif schedule.check == "skew":
            from ladle.monitor.skew import audit_skew

            breached = [ref for view in views for ref in _skewed(audit_skew(store, view, schedule.sample).payload)]
        else:
            from ladle.monitor.freshness import check_freshness

            breached = [r.view for r in check_freshness(store, list(views), now=end) if r.breach]
        if breached:
            log.warning("schedule %s: %s check past its thresholds: %s", schedule.name, schedule.check, breached)

    return run


def _skewed(payload: Mapping[str, Any]) -> list[str]:
    return [ref for ref, f in payload["features"].items() if f["rate"] > payload["max_rate"]]
