"""`GET /metrics` (registered in app/router.py when `METRICS_ENABLED`): Prometheus text, from
this process or, under `--workers N`, from all of them."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder

from app.observability.gauges import write_gauges
from app.observability.multiprocess import mark_dead_workers, multiprocess_directory

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request) -> Response:
    """Every metric, in Prometheus text (or OpenMetrics, when the scraper asks for it)."""
    write_gauges(request.app.state.database)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(registry()), media_type=content_type)


def registry() -> CollectorRegistry:
    """This process's metrics, or under `--workers N` every worker's (a registry made for the
    scrape, reading the files of `PROMETHEUS_MULTIPROC_DIR`)."""
    directory = multiprocess_directory()
    if directory is None:
        return REGISTRY
    mark_dead_workers(directory)
    shared = CollectorRegistry()
    multiprocess.MultiProcessCollector(shared, str(directory))  # type: ignore[no-untyped-call]
    return shared
