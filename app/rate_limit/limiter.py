"""`RateLimiter`: the app's rate limits over one storage, made once per app in the lifespan.

Counting is a moving window (the `limits` library): a request is accepted when fewer than N
were accepted from the same client in the last period, so there is no burst of 2N at a window
boundary, and refused requests do not count.

Storage:
- `REDIS_URL` set: Redis through redis-py's asyncio client, so every worker and replica shares
  the counters. Redis must never stand in the way of signing in: each call is bounded
  (`REDIS_SOCKET_TIMEOUT` to connect or read, `CALL_BUDGET` in all, no retries), and when Redis
  is down, slow or refusing, the request is let through (fail open) and a warning is logged, at
  most once per `WARNING_INTERVAL`.
- unset: the memory of this process; with several workers or replicas each counts on its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.config import Settings
from app.rate_limit.config import parse_rate_limit

logger = logging.getLogger("app.rate_limit")

EXCHANGE = "exchange"  # GET /auth/verify_supabase_token
ADMIN_LOGIN = "admin_login"  # POST /admin/login
KEY_PREFIX = "megapolis"  # Redis keys: megapolis:LIMITER/<limit name>/<client>/<count>/<period>
REDIS_SOCKET_TIMEOUT = 0.25  # seconds to connect to Redis, and to wait for one reply
CALL_BUDGET = 0.5  # seconds one limiter call may take in all, whatever Redis does
WARNING_INTERVAL = 60.0  # seconds between two "Redis unavailable" warnings

T = TypeVar("T")


class StorageUnavailable(Exception):
    """The counters could not be read or written in time."""


class FailureLog:
    """Logs a storage failure at most once per `interval` seconds (a down Redis would otherwise
    log a line per request), with how many failures were not logged; and once, at INFO, when
    the storage answers again after a logged failure."""

    def __init__(self, interval: float = WARNING_INTERVAL) -> None:
        self.interval = interval
        self._last_warning: float | None = None
        self._unlogged = 0
        self._warned = False

    def failed(self, reason: str) -> None:
        now = time.monotonic()
        if self._last_warning is not None and now - self._last_warning < self.interval:
            self._unlogged += 1
            return
        more = f"; {self._unlogged} more failures since the last warning" if self._unlogged else ""
        logger.warning(
            "rate-limit storage unavailable, requests are let through unlimited: %s%s",
            reason,
            more,
        )
        self._last_warning = now
        self._unlogged = 0
        self._warned = True

    def succeeded(self) -> None:
        if self._warned:
            self._warned = False
            logger.info("rate-limit storage answers again, limits apply")


class RateLimiter:
    def __init__(
        self,
        storage: MemoryStorage | RedisStorage,
        limits: Mapping[str, RateLimitItem],
        *,
        redis_pool: ConnectionPool | None = None,
    ) -> None:
        self.storage = storage
        self.limits = dict(limits)
        self.shared = redis_pool is not None
        self._strategy = MovingWindowRateLimiter(storage)
        self._redis_pool = redis_pool
        self._failures = FailureLog()

    async def hit(self, name: str, client: str) -> int | None:
        """Count a request of `client` against the limit `name`. None: go on; else the seconds
        until a request of that client would be accepted again (the request is refused).
        Storage failures let the request through (fail open)."""
        item = self.limits[name]
        try:
            accepted = await self._bounded(self._strategy.hit(item, name, client))
        except StorageUnavailable as exc:
            self._failures.failed(str(exc))
            return None
        if accepted:
            self._failures.succeeded()
            return None
        try:
            stats = await self._bounded(self._strategy.get_window_stats(item, name, client))
        except StorageUnavailable as exc:
            self._failures.failed(str(exc))
            return item.get_expiry()  # refused already; the longest wait it can be
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _bounded(self, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, CALL_BUDGET)
        except asyncio.TimeoutError:
            raise StorageUnavailable(f"no answer within {CALL_BUDGET} s") from None
        except StorageError as exc:
            reason = f"{type(exc.storage_error).__name__}: {exc.storage_error}"
            raise StorageUnavailable(reason) from None

    async def aclose(self) -> None:
        if self._redis_pool is not None:
            await self._redis_pool.aclose()
        elif isinstance(self.storage, MemoryStorage):
            # The memory storage expires old entries in a task of its own.
            timer = self.storage.timer
            if timer is not None and not timer.done():
                timer.cancel()
                await asyncio.gather(timer, return_exceptions=True)


def redis_connection_pool(url: str) -> ConnectionPool:
    """Short timeouts and no retries: a Redis that does not answer must cost a request a
    fraction of a second, not several (redis-py retries three times by default)."""
    return ConnectionPool.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        client_name="megapolis-rate-limit",
    )


def create_rate_limiter(settings: Settings) -> RateLimiter:
    """The limiter of one app; it connects to Redis only when first used, so the app starts
    (and fails open) while Redis is down."""
    limits = {
        EXCHANGE: parse_rate_limit(settings.RATE_LIMIT_EXCHANGE),
        ADMIN_LOGIN: parse_rate_limit(settings.RATE_LIMIT_ADMIN_LOGIN),
    }
    if settings.REDIS_URL is None:
        return RateLimiter(MemoryStorage(wrap_exceptions=True), limits)
    pool = redis_connection_pool(settings.REDIS_URL)
    options: dict[str, Any] = {"connection_pool": pool}  # limits types options as scalars
    storage = RedisStorage(
        "async+redis://",  # selects the storage; the pool above is what connects
        implementation="redispy",  # redis-py's asyncio client (the default is coredis)
        wrap_exceptions=True,
        key_prefix=KEY_PREFIX,
        **options,
    )
    return RateLimiter(storage, limits, redis_pool=pool)
