"""The route a request reached, as its template (`/api/v1/posts/{post_id}`): metric labels and
log fields name routes, never raw paths (each id would make a series of its own)."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

# Requests no route answered: unknown paths, and those answered before routing (CORS
# preflights, 413/414/431 and unknown hosts from the request limits, a client gone mid-body).
UNMATCHED = "unmatched"


class RouteTemplates:
    """The full template of each route of an app. FastAPI puts the route in the scope as its
    router declares it (`/posts/{post_id}`), without the prefix it was included with: the
    prefixes come from the (router, prefix) pairs the app includes (`app/router.py`)."""

    def __init__(
        self, routers: Iterable[tuple[APIRouter, str]], own_routes: Iterable[BaseRoute] = ()
    ) -> None:
        """`own_routes`: routes of the app itself, outside the routers (Swagger UI, ReDoc, the
        schema and their assets): plain Starlette routes, which put no route in the scope."""
        self._prefixed = [(prefix, route) for router, prefix in routers for route in router.routes]
        self._prefixed += [("", route) for route in own_routes]
        self._templates = {
            id(route): prefix + template
            for prefix, route in self._prefixed
            if isinstance(template := getattr(route, "path_format", None), str)
        }

    def of(self, scope: Scope) -> str:
        route: BaseRoute | None = scope.get("route")
        if route is None:
            return self._matching(scope)
        template = self._templates.get(id(route))
        if template is None:  # a route of the app itself (/docs...): its path is whole
            template = getattr(route, "path_format", UNMATCHED)
        return template

    def _matching(self, scope: Scope) -> str:
        """The template of the route the path leads to, for a request answered before routing
        (rare: this walks the routes)."""
        path: str = scope["path"]
        for prefix, route in self._prefixed:
            if not path.startswith(prefix):
                continue
            match, _ = route.matches({**scope, "path": path[len(prefix) :], "root_path": ""})
            if match is not Match.NONE:
                return self._templates.get(id(route), UNMATCHED)
        return UNMATCHED
