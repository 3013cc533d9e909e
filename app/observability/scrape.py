"""`GET /metrics`: Prometheus text, from this process or, under `--workers N`, from all of them."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from app.observability.http_metrics import MetricsMiddleware
from app.observability.multiprocess import mark_dead_workers, multiprocess_directory
from app.observability.pool import observe_pool

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of every metric (app/observability/metrics.py)."""
    observe_pool(request.app.state.database)
    return Response(scrape(), media_type=CONTENT_TYPE_LATEST)


def scrape() -> bytes:
    directory = multiprocess_directory()
    if directory is None:
        return generate_latest(REGISTRY)
    mark_dead_workers(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def install_metrics(app: FastAPI) -> None:
    """`GET /metrics` and the middleware that counts requests. Without this call (see
    `METRICS_ENABLED`), neither exists: requests pay nothing for metrics."""
    app.include_router(router)
    # Outermost, added last: it times and counts every answer, the other middlewares' included.
    app.add_middleware(MetricsMiddleware)
