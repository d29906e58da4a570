"""Cron expressions evaluated in a time zone, returning UTC instants (on top of ``croniter``).

Standard five-field cron (``minute hour day-of-month month day-of-week``) or one of the aliases
``@hourly @daily @midnight @weekly @monthly @yearly @annually``. Fire times are computed on the
wall clock of the schedule's time zone and returned as aware UTC datetimes.

Daylight-saving changes follow Vixie cron: a wall time skipped by a spring-forward change fires at
the first valid minute after the gap; when a wall time repeats on a fall-back change, a job with a
fixed hour fires once, while a job whose hour field is a wildcard (``5 * * * *``) fires in both
repeated hours, because they are different real hours.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from ladle.errors import DefinitionError
from ladle.times import as_utc

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ONE_US = timedelta(microseconds=1)
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


def load_timezone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name``, or a :class:`DefinitionError` naming it."""
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"time zone {name!r} is invalid: use an IANA name such as 'UTC' or 'Europe/London'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError(
            f"time zone {name!r} is unknown: use an IANA name such as 'UTC' or 'Europe/London'"
        ) from None


class CronSchedule:
    """A validated cron expression in a time zone.

    >>> hourly = CronSchedule("5 * * * *")
    >>> hourly.next_after(datetime(2026, 1, 1, 10, 5, tzinfo=UTC))
    datetime.datetime(2026, 1, 1, 11, 5, tzinfo=datetime.timezone.utc)
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str):
            raise DefinitionError(f"cron expression must be a string, got {type(expression).__name__}")
        self.expression = " ".join(expression.split())
        fields = _ALIASES.get(self.expression.lower(), self.expression)
        if len(fields.split()) != 5 or not croniter.is_valid(fields):
            raise DefinitionError(
                f"cron expression {expression!r} is invalid: use five fields 'minute hour day month weekday' "
                f"(e.g. '5 * * * *') or one of {', '.join(_ALIASES)}"
            )
        self._fields = fields
        self.timezone = timezone
        self.tz = load_timezone(timezone)
        # Vixie cron runs a fixed-hour job once when a wall time repeats; wildcard-hour jobs run in both hours.
        self._once_on_repeat = not fields.split()[1].startswith("*")
        try:
            self.next_after(_PROBE)
        except CroniterBadDateError:
            raise DefinitionError(f"cron expression {expression!r} never fires (no such date)") from None

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, timezone={self.timezone!r})"

    def _is_repeat(self, local: datetime) -> bool:
        """Whether ``local`` is the second occurrence of a wall time repeated by a DST change."""
        if not self._once_on_repeat:
            return False
        first = local.replace(tzinfo=None).replace(tzinfo=self.tz, fold=0)
        return first.astimezone(UTC) != local.astimezone(UTC)

    def _walk(self, start: datetime, backwards: bool) -> Iterator[datetime]:
        it = croniter(self._fields, as_utc(start).astimezone(self.tz))
        step = it.get_prev if backwards else it.get_next
        while True:
            local: datetime = step(datetime)
            if not self._is_repeat(local):
                yield local.astimezone(UTC)

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (UTC)."""
        return next(self._walk(moment, backwards=False))

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The newest fire time at or before ``moment`` (UTC)."""
        return next(self._walk(as_utc(moment) + _ONE_US, backwards=True))

    def fires(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Fire times ``T`` with ``after < T <= until``, oldest first."""
        end = as_utc(until)
        for fire in self._walk(after, backwards=False):
            if fire > end:
                return
            yield fire

    def newest_fires(self, after: datetime, until: datetime, limit: int) -> tuple[list[datetime], bool]:
        """Up to ``limit`` newest fire times in ``(after, until]``, oldest first, and whether older ones exist.

        Walks backwards from ``until``, so the cost is bounded by ``limit`` however long the gap is.
        """
        start = as_utc(after)
        newest: list[datetime] = []
        for fire in self._walk(as_utc(until) + _ONE_US, backwards=True):
            if fire <= start:
                return newest[::-1], False
            if len(newest) == limit:
                return newest[::-1], True
            newest.append(fire)
        raise AssertionError("unreachable: cron iteration is infinite")  # pragma: no cover
