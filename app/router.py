"""Every route module is registered here, with its prefix: the one place that lists the API.

Routers are included into the app directly (not nested inside one another): each level of
nesting costs a route-matching pass on every request.
"""

from fastapi import APIRouter, FastAPI

from app.routes import auth, health, post, supabase_webhook, user

API_V1_PREFIX = "/api/v1"

ROUTERS: list[tuple[APIRouter, str]] = [
    (health.router, ""),
    (auth.router, ""),
    (supabase_webhook.router, ""),
    (user.router, API_V1_PREFIX),
    (post.router, API_V1_PREFIX),
]


def include_routers(app: FastAPI) -> None:
    for router, prefix in ROUTERS:
        app.include_router(router, prefix=prefix)
