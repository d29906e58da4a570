"""``Schedule``: a cron-driven materialization job, declared in a feature repo next to its views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from ladle.definitions import FeatureView
from ladle.definitions._common import check_name, check_str, check_tags, common_args, common_spec
from ladle.errors import DefinitionError, ScheduleNotFoundError
from ladle.schedule.cron import CronSchedule
from ladle.times import as_utc

CatchUp = Literal["all", "latest"]
_CATCH_UP: tuple[CatchUp, ...] = ("all", "latest")

#: Default bound on missed fires run after downtime: a week of an hourly job.
DEFAULT_MAX_CATCH_UP = 168


class Schedule:
    """Materialize ``feature_views`` over the last ``lookback`` every time ``cron`` fires.

    >>> Schedule(name="hourly_prices_weather", cron="5 * * * *",
    ...          feature_views=["commodity_price_features", "weather_features"],
    ...          lookback=timedelta(hours=2))
    Schedule(name='hourly_prices_weather', cron='5 * * * *', timezone='UTC')

    A fire at time ``T`` materializes the window ``[T - lookback, T]`` of each view. ``cron`` is read
    on the wall clock of ``timezone``. After downtime, ``catch_up="all"`` runs every missed fire in
    order (at most ``max_catch_up`` of them, the newest); ``catch_up="latest"`` runs only the newest.
    Skipped fires are logged and recorded, never dropped silently.
    """

    def __init__(
        self,
        name: str,
        cron: str,
        feature_views: Sequence[str | FeatureView],
        lookback: timedelta,
        timezone: str = "UTC",
        catch_up: CatchUp = "all",
        max_catch_up: int = DEFAULT_MAX_CATCH_UP,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        self.name = check_name("schedule", name)
        try:
            self.cron = CronSchedule(cron, timezone)
        except DefinitionError as exc:
            raise DefinitionError(f"schedule '{name}': {exc}") from None
        self.feature_views = _view_names(name, feature_views)
        if not isinstance(lookback, timedelta) or lookback <= timedelta(0):
            raise DefinitionError(
                f"schedule '{name}': lookback must be a positive datetime.timedelta, got {lookback!r}"
            )
        self.lookback = lookback
        if catch_up not in _CATCH_UP:
            raise DefinitionError(f"schedule '{name}': catch_up must be 'all' or 'latest', got {catch_up!r}")
        self.catch_up: CatchUp = catch_up
        if isinstance(max_catch_up, bool) or not isinstance(max_catch_up, int) or max_catch_up < 1:
            raise DefinitionError(f"schedule '{name}': max_catch_up must be a positive int, got {max_catch_up!r}")
        self.max_catch_up = max_catch_up
        self.description = check_str("schedule", name, "description", description)
        self.tags = check_tags("schedule", name, tags)
        self.owner = check_str("schedule", name, "owner", owner)

    @property
    def timezone(self) -> str:
        """The IANA time zone the cron expression is read in."""
        return self.cron.timezone

    def window(self, fire_time: datetime) -> tuple[datetime, datetime]:
        """The event-time window ``[T - lookback, T]`` materialized by the fire at ``T`` (UTC)."""
        end = as_utc(fire_time)
        return end - self.lookback, end

    def next_fire(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (UTC)."""
        return self.cron.next_after(after)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready description (for ``ladle schedule --list -o json`` and the docs)."""
        return {
            "name": self.name,
            "cron": self.cron.expression,
            "timezone": self.timezone,
            "feature_views": list(self.feature_views),
            "lookback_seconds": self.lookback.total_seconds(),
            "catch_up": self.catch_up,
            "max_catch_up": self.max_catch_up,
            **common_spec(self),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Schedule:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            cron=spec["cron"],
            feature_views=spec["feature_views"],
            lookback=timedelta(seconds=spec["lookback_seconds"]),
            timezone=spec.get("timezone", "UTC"),
            catch_up=spec.get("catch_up", "all"),
            max_catch_up=spec.get("max_catch_up", DEFAULT_MAX_CATCH_UP),
            **common_args(spec),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(("schedule", self.name))

    def __repr__(self) -> str:
        return f"Schedule(name={self.name!r}, cron={self.cron.expression!r}, timezone={self.timezone!r})"


def find_schedule(schedules: Sequence[Schedule], name: str, project: str | None = None) -> Schedule:
    """The schedule called ``name``, or a :class:`ScheduleNotFoundError` listing the declared ones."""
    for schedule in schedules:
        if schedule.name == name:
            return schedule
    known = ", ".join(sorted(s.name for s in schedules)) or "none"
    raise ScheduleNotFoundError(name, project, detail=f"Declared schedules: {known}")


def _view_names(schedule: str, views: Sequence[str | FeatureView]) -> tuple[str, ...]:
    if isinstance(views, str) or not isinstance(views, Sequence):
        raise DefinitionError(f"schedule '{schedule}': feature_views must be a list of view names or FeatureViews")
    names: list[str] = []
    for view in views:
        name = view.name if isinstance(view, FeatureView) else view
        if not isinstance(name, str):
            raise DefinitionError(f"schedule '{schedule}': feature_views must hold names or FeatureViews, got {view!r}")
        if name in names:
            raise DefinitionError(f"schedule '{schedule}': feature view '{name}' is listed twice")
        names.append(check_name("feature view", name))
    if not names:
        raise DefinitionError(f"schedule '{schedule}' has no feature_views")
    return tuple(names)
