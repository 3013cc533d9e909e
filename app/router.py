"""Every route module is registered here, with its prefix: the one place that lists the API,
and that names its operations for the OpenAPI schema.

Each router's routes are copied into the app's own route list (`add_route`), not included
with `app.include_router`: FastAPI (0.16x) keeps an included router as one entry of the app's
list, which it walks on every request (the router that serves it twice), with bookkeeping for
each candidate route. That cost `PATCH /api/v1/users/me` ~70 µs of its ~1,450 in the profile,
against ~6 µs for a route declared on the app itself (docs/performance.md). A copied route is
the route FastAPI makes for `@app.get(...)`.
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


def include_routers(app: FastAPI, settings: Settings) -> None:
    """Add the app's routes, naming their operations (`operation_id`, `summary`)."""
    for router, prefix in routers_for(settings):
        for route in router.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(
                    f"{route!r} (under {prefix or '/'}): a router of app/router.py holds only "
                    "FastAPI routes (@router.get(...) and the like)"
                )
            check_tagged(route)
            add_route(app, route, prefix)


def add_route(app: FastAPI, route: APIRoute, prefix: str) -> None:
    """`route` (whose router's prefix, tags, responses and dependencies it already carries)
    on the app, under `prefix`: what `app.include_router` did before FastAPI 0.16x."""
    app.router.add_api_route(
        prefix + route.path,
        route.endpoint,
        response_model=route.response_model,
        status_code=route.status_code,
        tags=route.tags,
        dependencies=route.dependencies,
        summary=route.summary or summary(route),
        description=route.description,
        response_description=route.response_description,
        responses=route.responses,
        deprecated=route.deprecated,
        methods=route.methods,
        operation_id=route.operation_id,
        response_model_include=route.response_model_include,
        response_model_exclude=route.response_model_exclude,
        response_model_by_alias=route.response_model_by_alias,
        response_model_exclude_unset=route.response_model_exclude_unset,
        response_model_exclude_defaults=route.response_model_exclude_defaults,
        response_model_exclude_none=route.response_model_exclude_none,
        include_in_schema=route.include_in_schema,
        response_class=route.response_class,
        name=route.name,
        route_class_override=type(route),
        callbacks=route.callbacks,
        openapi_extra=route.openapi_extra,
        generate_unique_id_function=operation_id,
        strict_content_type=route.strict_content_type,
    )
