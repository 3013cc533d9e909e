"""Timestamps as Supabase writes them, read into aware datetimes.

GoTrue's JSON (`/auth/v1/user`) writes Go's RFC 3339 (`2026-01-02T03:04:05.123456789Z`);
a Database Webhook carries PostgreSQL's `to_jsonb()` of a `timestamptz`
(`2026-01-02T03:04:05.12+00:00`, fraction trimmed, or `infinity`). `datetime.fromisoformat`
before Python 3.11 takes neither `Z` nor fractions of other than 3 or 6 digits.

Both can write instants Python's datetime cannot hold (years 1 to 9999, in UTC): PostgreSQL goes
to year 294276 and writes BC dates with a ` BC` suffix, and `9999-12-31T23:59:59-14:00` is year
10000 once in UTC. Those are `OutsideTheCalendar`, never an `OverflowError` (a 500).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

TIMESTAMP = re.compile(
    r"(?P<year>\d{4,})(?P<date>-\d{2}-\d{2})(?P<time>[T ]\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>Z|z|[+-]\d{2}(?::?\d{2})?)?"
    r"(?P<era> BC)?"
)


class OutsideTheCalendar(ValueError):
    """A well-formed timestamp before year 1 or after year 9999 (in UTC)."""

    def __init__(self, value: str, *, later: bool) -> None:
        super().__init__(f"outside the years 1 to 9999: {value[:40]!r}")
        self.later = later
        """After year 9999 (else before year 1)."""


def parse_timestamp(value: str) -> datetime:
    """An aware datetime (UTC when no zone is written); `infinity` / `-infinity` → the largest /
    smallest one. `OutsideTheCalendar` (a ValueError) for one Python cannot hold, ValueError for
    anything else."""
    text = value.strip()
    if text == "infinity":
        return datetime.max.replace(tzinfo=timezone.utc)
    if text == "-infinity":
        return datetime.min.replace(tzinfo=timezone.utc)
    match = TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"not a timestamp: {value[:40]!r}")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    zone = match["zone"] or "+00:00"
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif len(zone) == 3:
        zone += ":00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    digits = match["year"].lstrip("0")
    bc = match["era"] is not None
    in_calendar = 0 < len(digits) <= 4 and not bc
    year = match["year"] if in_calendar else _stand_in_year(digits, bc)
    time = match["time"].replace(" ", "T")
    parsed = datetime.fromisoformat(f"{year}{match['date']}{time}.{fraction}{zone}")
    if not in_calendar:
        raise OutsideTheCalendar(value, later=bool(digits) and not bc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # the offset took it past year 9999 or before year 1
        raise OutsideTheCalendar(value, later=parsed.year == 9999) from None


def _stand_in_year(digits: str, bc: bool) -> str:
    """A year Python holds, to check the rest of a timestamp outside the calendar on
    (`10000-13-01` is no timestamp at all): a leap year when the real one is one. The last four
    digits are enough to know; a BC year counts as astronomers do (1 BC is year 0)."""
    year = int(digits[-4:] or "0")
    if bc:
        year = 1 - year
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return "2000" if leap else "2001"


def is_future(value: object, now: datetime | None = None) -> bool:
    """`value` (a timestamp string, or None) is after `now`; one after year 9999 is too, one
    before year 1 is not. ValueError if it is not a timestamp."""
    if value is None:
        return False
    if not isinstance(value, str):
        raise ValueError("a timestamp must be a string")
    try:
        moment = parse_timestamp(value)
    except OutsideTheCalendar as outside:
        return outside.later
    return moment > (now or datetime.now(timezone.utc))
