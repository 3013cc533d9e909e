"""Every route module is registered here, with its prefix: the one place that lists the API.

Routers are included into the app directly (not nested inside one another): each level of
nesting costs a route-matching pass on every request.
"""

from fastapi import APIRouter, FastAPI

from app.config import Settings
from app.observability import scrape
from app.routes import audit_event, auth, health, post, supabase_webhook, user

API_V1_PREFIX = "/api/v1"

Routers = list[tuple[APIRouter, str]]

ROUTERS: Routers = [
    (health.router, ""),
    (auth.router, ""),
    (supabase_webhook.router, ""),
    (user.router, API_V1_PREFIX),
    (post.router, API_V1_PREFIX),
    (audit_event.router, API_V1_PREFIX),
]


def routers_for(settings: Settings) -> Routers:
    """ROUTERS, and `GET /metrics` when `METRICS_ENABLED`."""
    return [*ROUTERS, (scrape.router, "")] if settings.METRICS_ENABLED else list(ROUTERS)


def include_routers(app: FastAPI, settings: Settings) -> Routers:
    """Include the app's routers; returns them, with their prefixes."""
    routers = routers_for(settings)
    for router, prefix in routers:
        app.include_router(router, prefix=prefix)
    return routers
