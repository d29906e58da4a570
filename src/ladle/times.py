"""Reading times given as text or datetimes: ISO 8601 or ``now``, always as aware UTC.

One parser for every entry point (the CLI's arguments, the server's request fields, the SDK's
materialization bounds), so the same text means the same instant everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ladle.errors import RequestError


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; naive values are taken to be UTC (Feast's rule)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_utc(value: datetime | str) -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text (naive means UTC)."""
    if isinstance(value, str):
        return parse_time(value)
    if not isinstance(value, datetime):
        raise RequestError(f"expected a datetime or ISO 8601 text, got {value!r}")
    return as_utc(value)


def parse_time(text: str, what: str = "") -> datetime:
    """Parse ISO 8601 (``2024-01-06``, ``2024-01-06T12:00``, ``…Z``, ``…+02:00``) or ``now``; naive means UTC.

    ``what`` names where the text came from (``--start``, ``'end_ts'``) at the head of the error.
    """
    raw = text.strip()
    if raw.lower() == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        where = f"{what}: " if what else ""
        raise RequestError(f"{where}{text!r} is not an ISO 8601 time, e.g. 2024-01-06T00:00:00Z") from None
    return as_utc(value)
