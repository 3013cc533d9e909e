"""The connection pool serves waiting requests in arrival order (app/db/fair_pool.py)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

from app.config import Settings
from app.db.engine import create_engine
from app.db.fair_pool import FairAsyncQueue, FairAsyncQueuePool
from tests.conftest import PostgresServer, make_settings


@pytest.fixture
def pool_settings(postgres_server: PostgresServer) -> Settings:
    return make_settings(
        postgres_server.url_for("postgres"),
        DATABASE_POOL_SIZE=1,
        DATABASE_MAX_OVERFLOW=0,
        DATABASE_POOL_TIMEOUT=2,
    )


@pytest.mark.parametrize("queue_class", [AsyncAdaptedQueue, FairAsyncQueue])
async def test_a_returned_connection_goes_to_the_oldest_waiter(
    queue_class: type[AsyncAdaptedQueue[str]],
) -> None:
    """The moment a connection comes back, the first waiter is woken but has not run yet; a
    request arriving then takes the connection from asyncio.Queue (SQLAlchemy's default), and
    the waiter goes back to the end of the line. The fair queue hands it to the waiter."""
    queue = queue_class(maxsize=1)
    waiter = asyncio.create_task(greenlet_spawn(queue.get, True, 5.0))
    await asyncio.sleep(0.01)  # the waiter is waiting

    queue.put("connection", False)
    try:
        barged: str | None = await greenlet_spawn(queue.get, False)
    except Empty:
        barged = None
    if queue_class is FairAsyncQueue:
        assert barged is None
        assert await waiter == "connection"
    else:  # the unfairness this module exists for
        assert barged == "connection"
        queue.put("connection", False)
        assert await waiter == "connection"


async def test_the_engine_uses_the_fair_pool(pool_settings: Settings) -> None:
    engine = create_engine(pool_settings)
    try:
        assert isinstance(engine.sync_engine.pool, FairAsyncQueuePool)
        served: list[str] = []

        async def use(name: str, hold: float) -> None:
            async with engine.connect() as connection:
                served.append(name)
                await connection.execute(text("SELECT 1"))
                await asyncio.sleep(hold)

        first = asyncio.create_task(use("holder", 0.1))
        await asyncio.sleep(0.02)
        waiters = [asyncio.create_task(use(f"waiter{i}", 0.01)) for i in range(5)]
        await asyncio.gather(first, *waiters)
        assert served == ["holder", *(f"waiter{i}" for i in range(5))]
    finally:
        await engine.dispose()


async def test_a_waiter_times_out_and_a_cancelled_one_gives_the_connection_on(
    pool_settings: Settings,
) -> None:
    engine = create_engine(pool_settings.model_copy(update={"DATABASE_POOL_TIMEOUT": 0.2}))
    try:
        async with engine.connect():
            with pytest.raises(PoolTimeoutError):
                async with engine.connect():
                    pass
            cancelled = asyncio.create_task(engine.connect().start())
            await asyncio.sleep(0.05)
            cancelled.cancel()
        # The one connection is free again and not lost to the cancelled waiter.
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 2")) == 2
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
