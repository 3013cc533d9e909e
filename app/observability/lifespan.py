"""What observability needs while the app runs: the tracing of its database engine and Supabase
client (made in the lifespan), and under `--workers N` the gauges (in flight, the pool) written
for the other workers' scrapes; at shutdown, the spans left flushed and this worker's live
gauges dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from app.config import Settings
from app.observability.gauges import sampling
from app.observability.multiprocess import mark_this_worker_dead, multiprocess_directory
from app.observability.tracing import Tracing


@asynccontextmanager
async def observing(
    app: FastAPI, settings: Settings, tracing: Tracing | None
) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        if tracing is not None:
            tracing.instrument_clients(app.state.database.engine, app.state.supabase.http)
            stack.push_async_callback(tracing.aclose)
        if settings.METRICS_ENABLED and multiprocess_directory() is not None:
            stack.callback(mark_this_worker_dead)
            await stack.enter_async_context(sampling(app.state.database))
        yield
