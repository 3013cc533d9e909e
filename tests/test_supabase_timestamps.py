"""app.supabase.timestamps reads every timestamp shape Supabase writes, on any Python 3.10+."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.supabase.timestamps import OutsideTheCalendar, is_future, parse_timestamp

UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2026-01-02T03:04:05.12+00:00", datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:34:05+0230", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02 03:04:05.5", datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        ("infinity", datetime.max.replace(tzinfo=UTC)),
        ("-infinity", datetime.min.replace(tzinfo=UTC)),
    ],
)
def test_shapes(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "2026-13-01T00:00:00Z", "2026-01-02", "1e9"])
def test_not_timestamps(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_is_future() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert is_future("2026-01-01T00:00:01Z", now)
    assert not is_future("2026-01-01T00:00:00Z", now)
    assert not is_future(None, now)
    assert is_future("infinity", now)
    assert is_future((datetime.now(UTC) + timedelta(minutes=1)).isoformat())
    with pytest.raises(ValueError):
        is_future(12, now)


# Well-formed, but outside what Python's datetime holds (years 1 to 9999 once in UTC): what
# PostgreSQL's to_jsonb() writes for such a timestamptz, and what GoTrue could send.
LATER_THAN_THE_CALENDAR = [
    "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
    "9999-12-31T23:59:59.999999999-00:01",
    "10000-01-01T13:59:59+00:00",
    "294276-12-31T23:59:59+00:00",  # PostgreSQL's last timestamp
    "9" * 100 + "-01-01T00:00:00Z",  # a huge number
]
EARLIER_THAN_THE_CALENDAR = [
    "0000-01-01T00:00:00Z",  # year 0
    "0001-01-01T00:00:00+14:00",
    "0044-03-15T00:00:00+00:00 BC",
]


@pytest.mark.parametrize(
    ("text", "later"),
    [(text, True) for text in LATER_THAN_THE_CALENDAR]
    + [(text, False) for text in EARLIER_THAN_THE_CALENDAR],
)
def test_outside_the_calendar(text: str, later: bool) -> None:
    with pytest.raises(OutsideTheCalendar) as refused:
        parse_timestamp(text)
    assert refused.value.later is later
    assert isinstance(refused.value, ValueError)  # a 422 in a request body
    assert is_future(text) is later  # a ban beyond the calendar is a ban


@pytest.mark.parametrize(
    "text", ["10000-13-01T00:00:00Z", "0000-02-30T00:00:00Z", "10000-01-01T24:00:00Z"]
)
def test_outside_the_calendar_and_malformed(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_timestamp(text)
    assert not isinstance(refused.value, OutsideTheCalendar)
