"""``LiveFeed``: a repo-declared source of fresh rows that enter through a push source.

>>> LiveFeed(name="weather_live", push_source="weather_push", compute=live_weather,
...          warmup=timedelta(days=1), catch_up=timedelta(days=1))

``compute(request)`` returns feature rows (the push source's columns) for event times up to
``request.now``, computed over a path that starts at ``request.origin``. A run pushes the rows
with event time in ``(since, now]`` through :meth:`FeatureStore.push`, the path production data
take. The first run of a process catches up: ``origin = now - warmup - catch_up`` and
``since = now - catch_up``; a follow-up run keeps the origin (so it continues the same path)
and pushes only what is newer than the previous run's ``now``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions._common import check_name
from ladle.errors import DataSourceError, DefinitionError, ObjectNotFoundError, SchemaMismatchError
from ladle.repo.loader import collect_declared, select_named

if TYPE_CHECKING:
    from ladle.retrieval.push import PushMode
    from ladle.store import FeatureStore


@dataclass(frozen=True)
class FeedRequest:
    """Compute the path from ``origin`` up to ``now`` (UTC) with random ``seed``."""

    origin: datetime
    now: datetime
    seed: int


@dataclass(frozen=True)
class LiveFeed:
    """Fresh rows for ``push_source``; declared in a feature repo."""

    name: str
    push_source: str
    compute: Callable[[FeedRequest], pa.Table]
    warmup: timedelta
    catch_up: timedelta
    timestamp_field: str = "event_timestamp"
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("live feed", self.name)
        if not callable(self.compute):
            raise DefinitionError(f"live feed '{self.name}': compute must be a callable taking a FeedRequest")
        if self.warmup < timedelta(0) or self.catch_up <= timedelta(0):
            raise DefinitionError(f"live feed '{self.name}': warmup must be >= 0 and catch_up > 0")


@dataclass(frozen=True)
class FeedResult:
    """What one run of a feed pushed."""

    name: str
    push_source: str
    since: datetime
    now: datetime
    rows: int
    newest: datetime | None


class FeedNotFoundError(ObjectNotFoundError):
    """No live feed by that name is declared in the feature repo."""

    kind = "live feed"


def feed_rows(feed: LiveFeed, origin: datetime, since: datetime, now: datetime, seed: int) -> pa.Table:
    """The rows a run would push: ``feed.compute`` for the path, kept to event times in ``(since, now]``."""
    try:
        rows = feed.compute(FeedRequest(_utc(origin), _utc(now), seed))
    except (FileNotFoundError, ImportError) as exc:  # missing raw data or data package: the user can fix it
        raise DataSourceError(f"live feed '{feed.name}': {exc}") from exc
    if feed.timestamp_field not in rows.column_names:
        raise SchemaMismatchError(f"live feed '{feed.name}' rows have no '{feed.timestamp_field}' column")
    ts = pc.cast(rows[feed.timestamp_field], pa.timestamp("us", tz="UTC"))
    lo = pa.scalar(_utc(since), pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(_utc(now), pa.timestamp("us", tz="UTC"))
    return rows.filter(pc.and_(pc.greater(ts, lo), pc.less_equal(ts, hi)))


def run_feed(
    store: FeatureStore,
    feed: LiveFeed,
    origin: datetime,
    since: datetime,
    now: datetime,
    seed: int,
    to: PushMode = "online",
) -> FeedResult:
    """Push the feed's rows with event time in ``(since, now]``; see the module docstring."""
    rows = feed_rows(feed, origin, since, now, seed)
    if rows.num_rows:
        store.push(feed.push_source, rows, to=to)
    newest = pc.max(pc.cast(rows[feed.timestamp_field], pa.timestamp("us", tz="UTC"))).as_py() if len(rows) else None
    return FeedResult(feed.name, feed.push_source, _utc(since), _utc(now), rows.num_rows, newest)


def collect_feeds(repo_path: str | Path) -> list[LiveFeed]:
    """Every module-level :class:`LiveFeed` of the repo, sorted by name."""
    return collect_declared(repo_path, LiveFeed, "live feeds")


def select_feeds(feeds: list[LiveFeed], names: list[str]) -> list[LiveFeed]:
    """The feeds called ``names`` (all when empty), in the given order."""
    return select_named(feeds, names, FeedNotFoundError, "live feeds")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
