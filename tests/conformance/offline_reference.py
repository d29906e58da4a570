"""Brute-force references for the offline conformance cases: the rules written out plainly.

Nothing here is clever or fast: for each entity row (or each key of a window) every source row is
scanned. It shares no code with any store, nor with ``pandas.merge_asof`` (``reference_pit``), so
the two references check each other's reading of docs/offline.md as well as the stores.

A source row is a :class:`Fact` (its key values, event time and created time). A query's answer is
the list of the indices of every row that may be returned: the rows with the greatest (event,
created) rank, where a missing created time ranks below any value. More than one index means the
rows are tied on both and the rules let a store return any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

_LOWEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Fact:
    """A source row as the rules see it (times are aware datetimes)."""

    keys: tuple[Any, ...]
    event: datetime
    created: datetime | None = None

    @property
    def rank(self) -> tuple[datetime, bool, datetime]:
        """Newer event first; at equal event times a created time beats none, and a later one an earlier."""
        return (self.event, self.created is not None, self.created or _LOWEST)


def _best(indices: list[int], facts: Sequence[Fact]) -> list[int]:
    """The indices of the highest-ranked facts (all of them if tied)."""
    if not indices:
        return []
    top = max(facts[i].rank for i in indices)
    return [i for i in indices if facts[i].rank == top]


def pit_candidates(
    facts: Sequence[Fact], queries: Sequence[tuple[tuple[Any, ...], datetime]], ttl: timedelta
) -> list[list[int]]:
    """For each (keys, time) query, the rows the point-in-time join may pick ([] = no match).

    A row qualifies when its keys equal the query's (a NULL key equals nothing), its event time is
    at or before the query time and, with a ttl (0 = none), at or after the query time minus ttl.
    """
    answers = []
    for keys, t in queries:
        qualifying = [
            i
            for i, fact in enumerate(facts)
            if None not in keys and fact.keys == keys and fact.event <= t and (not ttl or fact.event >= t - ttl)
        ]
        answers.append(_best(qualifying, facts))
    return answers


def latest_candidates(facts: Sequence[Fact], start: datetime, end: datetime) -> dict[tuple[Any, ...], list[int]]:
    """For each key with a row in ``[start, end]``, the rows ``pull_latest`` may return (NULL keys skipped)."""
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, fact in enumerate(facts):
        if None not in fact.keys and start <= fact.event <= end:
            by_key.setdefault(fact.keys, []).append(i)
    return {keys: _best(indices, facts) for keys, indices in by_key.items()}
