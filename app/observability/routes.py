"""The route a request reached, as its template (`/api/v1/posts/{post_id}`): metric labels and
log fields name routes, never raw paths (each id would make a series of its own)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

# Requests no route answered: unknown paths, and those answered before routing (CORS
# preflights, 413/414/431 and unknown hosts from the request limits, a client gone mid-body).
UNMATCHED = "unmatched"


def route_of(scope: Scope) -> BaseRoute | None:
    """The route that answered, or the one the path leads to when the request was answered
    before routing; None for a path no route matches."""
    route: BaseRoute | None = scope.get("route")
    if route is not None:
        return route
    router = getattr(scope.get("app"), "router", None)
    for candidate in getattr(router, "routes", ()):
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            return candidate  # type: ignore[no-any-return]
    return None


def template_of(route: BaseRoute | None) -> str:
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else UNMATCHED


def route_template(scope: Scope) -> str:
    return template_of(route_of(scope))
