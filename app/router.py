"""Every route module is registered here, with its prefix: the one place that lists the API,
and that names its operations for the OpenAPI schema.

Routers are included into the app directly (not nested inside one another): each level of
nesting costs a route-matching pass on every request.
"""

from enum import Enum

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.utils import generate_unique_id

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


def operation_id(route: APIRoute) -> str:
    """`<tag>-<function name>`, e.g. `users-read_me`: short and stable, so a client generated
    from the schema (clients/typescript/) gets usable names, instead of FastAPI's default
    `read_me_api_v1_users_me_get`. Unique as long as no two functions of a tag share a name
    (tests/test_openapi_operations.py checks). A route left out of the schema may have no tag:
    it keeps FastAPI's id, which only names its request body's schema."""
    if not route.tags:
        return generate_unique_id(route)
    tag = route.tags[0]
    return f"{tag.value if isinstance(tag, Enum) else tag}-{route.name}"


def check_tagged(route: APIRoute) -> None:
    if route.include_in_schema and not route.tags:
        raise ValueError(
            f"{route.path} ({route.name}) has no tag: give its APIRouter tags=[...], "
            "the first tag names its operations"
        )


def summary(route: APIRoute) -> str:
    """The first sentence of the route's docstring, without its full stop; else FastAPI's own
    (the function's name in title case)."""
    paragraph = " ".join((route.description or "").strip().split("\n\n", 1)[0].split())
    sentence = paragraph.split(". ", 1)[0].rstrip(".")
    return sentence or route.name.replace("_", " ").title()


def include_routers(app: FastAPI, settings: Settings) -> Routers:
    """Include the app's routers, naming their operations (`operation_id`, `summary`); returns
    them, with their prefixes."""
    routers = routers_for(settings)
    for router, prefix in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                # Here, at startup: FastAPI names an included route only when it first serves.
                check_tagged(route)
                route.summary = route.summary or summary(route)
        app.include_router(router, prefix=prefix, generate_unique_id_function=operation_id)
    return routers
