"""Checks for the rate-limit settings, so a malformed value stops the start with one clear line.

Pure functions without app imports: `app.config` calls them from its validators. The libraries
are imported when a value is checked, so importing the settings (the CLI, migrations) stays
light."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from limits import RateLimitItem

REDIS_URL_EXAMPLE = "redis://localhost:6379/0"
RATE_LIMIT_EXAMPLE = '"60/minute", "10 per 30 seconds", "1000/hour"'
_DATABASE_PATH = re.compile(r"/?(\d+)?")


def parse_rate_limit(value: str) -> RateLimitItem:
    """One limit in the `limits` notation: "60/minute", "10 per 30 seconds"."""
    from limits import parse

    text = value.strip()
    if any(separator in text for separator in ";,|"):
        # limits.parse would silently keep only the first of several limits.
        raise ValueError("one limit only")
    item = parse(text)
    if item.amount < 1:
        raise ValueError("the count must be at least 1")
    return item


def check_rate_limit(name: str, value: str) -> str:
    try:
        parse_rate_limit(value)
    except ValueError as exc:
        raise ValueError(
            f"{name} must be a count per period, e.g. {RATE_LIMIT_EXAMPLE} ({exc})"
        ) from None
    return value.strip()


def check_redis_url(name: str, value: str) -> str:
    """A URL redis-py accepts: redis://, rediss:// (TLS) or unix://. The message never repeats
    the URL, which may hold a password."""
    from redis.asyncio.connection import parse_url

    url = value.strip()
    try:
        parse_url(url)  # redis-py's own parser: scheme, port, query options
        parsed = urlparse(url)
    except ValueError as exc:
        raise ValueError(f"{name} is not a Redis URL ({exc}); e.g. {REDIS_URL_EXAMPLE}") from None
    if parsed.scheme in ("redis", "rediss"):
        if not parsed.hostname:
            raise ValueError(f"{name} has no host; e.g. {REDIS_URL_EXAMPLE}")
        if not _DATABASE_PATH.fullmatch(parsed.path):
            raise ValueError(
                f"{name}: the path must be a database number; e.g. {REDIS_URL_EXAMPLE}"
            )
    elif not parsed.path:
        raise ValueError(f"{name} has no socket path; e.g. unix:///run/redis/redis.sock")
    return url
