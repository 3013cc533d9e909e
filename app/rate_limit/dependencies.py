"""FastAPI dependencies that apply a rate limit to a route: `dependencies=[LimitExchange]`.

A dependency listed in the route decorator runs before the handler and before the handler's own
dependencies (database session, Supabase client), so a refused request costs one counter
lookup and nothing else: no database connection, no call to Supabase."""

from __future__ import annotations

from fastapi import Depends, Request

from app.errors import TooManyRequests
from app.rate_limit.client import client_address
from app.rate_limit.limiter import EXCHANGE, RateLimiter


async def limit_exchange(request: Request) -> None:
    """`RATE_LIMIT_EXCHANGE` per client address; over it, 429 with `Retry-After`."""
    limiter: RateLimiter = request.app.state.rate_limiter
    retry_after = await limiter.hit(EXCHANGE, client_address(request))
    if retry_after is not None:
        raise TooManyRequests(retry_after)


LimitExchange = Depends(limit_exchange)
