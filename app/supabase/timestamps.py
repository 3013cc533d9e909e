"""Timestamps as Supabase writes them, read into aware datetimes.

GoTrue's JSON (`/auth/v1/user`) writes Go's RFC 3339 (`2026-01-02T03:04:05.123456789Z`);
a Database Webhook carries PostgreSQL's `to_jsonb()` of a `timestamptz`
(`2026-01-02T03:04:05.12+00:00`, fraction trimmed, or `infinity`). `datetime.fromisoformat`
before Python 3.11 takes neither `Z` nor fractions of other than 3 or 6 digits.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

TIMESTAMP = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>Z|z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_timestamp(value: str) -> datetime:
    """An aware datetime (UTC when no zone is written); `infinity` / `-infinity` → the largest /
    smallest one. ValueError for anything else."""
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
    parsed = datetime.fromisoformat(f"{match['base'].replace(' ', 'T')}.{fraction}{zone}")
    return parsed.astimezone(timezone.utc)


def is_future(value: object, now: datetime | None = None) -> bool:
    """`value` (a timestamp string, or None) is after `now`. ValueError if it is not a
    timestamp."""
    if value is None:
        return False
    if not isinstance(value, str):
        raise ValueError("a timestamp must be a string")
    return parse_timestamp(value) > (now or datetime.now(timezone.utc))
