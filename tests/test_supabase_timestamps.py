"""app.supabase.timestamps reads every timestamp shape Supabase writes, on any Python 3.10+."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.supabase.timestamps import is_future, parse_timestamp

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
