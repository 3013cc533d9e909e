"""Gauges read when they are scraped, never kept up to date on each request: requests in flight
and the database pool (connections in use and idle, checkouts waiting).

A request only adds and subtracts one to a plain count (`RequestsInFlight`); a scrape writes
that count and the pool's state to the gauges of the process that answers it. Under
`--workers N` every worker also writes its own every `SAMPLE_SECONDS`, so a scrape sees the
other workers' as of at most that long ago.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from sqlalchemy.pool import QueuePool

from app.db.database import Database
from app.db.fair_pool import FairAsyncQueuePool
from app.observability.metrics import (
    DB_POOL_IDLE,
    DB_POOL_IN_USE,
    DB_POOL_WAITING,
    HTTP_REQUESTS_IN_FLIGHT,
)

SAMPLE_SECONDS = 1.0


class RequestsInFlight:
    """Requests this process is serving (`HttpMetrics` counts them). No lock: one event
    loop per process changes it."""

    count = 0


def write_gauges(database: Database) -> None:
    HTTP_REQUESTS_IN_FLIGHT.set(RequestsInFlight.count)
    pool = database.engine.pool
    if not isinstance(pool, QueuePool):  # an in-memory SQLite's single connection
        return
    DB_POOL_IN_USE.set(pool.checkedout())
    DB_POOL_IDLE.set(pool.checkedin())
    DB_POOL_WAITING.set(pool.waiting() if isinstance(pool, FairAsyncQueuePool) else 0)


@asynccontextmanager
async def sampling(database: Database, every: float = SAMPLE_SECONDS) -> AsyncIterator[None]:
    """Write the gauges every `every` seconds while the block runs."""

    async def sample_forever() -> None:
        while True:
            write_gauges(database)
            await asyncio.sleep(every)

    task = asyncio.create_task(sample_forever())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
