"""The database pool's state in the metrics: connections in use and idle, checkouts waiting.

Read from the pool, never counted on each checkout: a request pays nothing for these gauges. A
scrape reads the pool of the process that answers it; under `--workers N` every worker also
writes its pool's state every `SAMPLE_SECONDS`, so a scrape sees the other workers' as of at
most that long ago.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from sqlalchemy.pool import QueuePool

from app.db.database import Database
from app.db.fair_pool import FairAsyncQueuePool
from app.observability.metrics import DB_POOL_IDLE, DB_POOL_IN_USE, DB_POOL_WAITING

SAMPLE_SECONDS = 1.0


def observe_pool(database: Database) -> None:
    pool = database.engine.pool
    if not isinstance(pool, QueuePool):  # an in-memory SQLite's single connection
        return
    DB_POOL_IN_USE.set(pool.checkedout())
    DB_POOL_IDLE.set(pool.checkedin())
    DB_POOL_WAITING.set(pool.waiting() if isinstance(pool, FairAsyncQueuePool) else 0)


@asynccontextmanager
async def sampling_pool(database: Database, every: float = SAMPLE_SECONDS) -> AsyncIterator[None]:
    """Write the pool's state every `every` seconds while the block runs."""

    async def sample_forever() -> None:
        while True:
            observe_pool(database)
            await asyncio.sleep(every)

    task = asyncio.create_task(sample_forever())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
