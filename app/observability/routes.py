"""The route a request reached, as its template (`/api/v1/posts/{post_id}`): metric labels and
log fields name routes, never raw paths (each id would make a series of its own)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

# Requests no route answered: unknown paths, and those answered before routing (CORS
# preflights, 413/414/431 and unknown hosts from the request limits, a client gone mid-body).
UNMATCHED = "unmatched"


class RouteTemplates:
    """The template of the route each request reached, from the app's route list `routes`
    (every route of the API is on it, with its whole path: `app/router.py`). A route inside a
    mount (the admin site's pages) is named by its mount (`/admin/{path}`): its own template is
    relative to the mount, and what is behind a mount is its own business."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes  # read as it is at each request that needs the walk
        # The routes there now, by id (a route is not hashable), kept with their template.
        self._templates = {
            id(route): (route, template)
            for route in routes
            if isinstance(template := getattr(route, "path_format", None), str)
        }

    def of(self, scope: Scope) -> str:
        route: BaseRoute | None = scope.get("route")
        known = self._templates.get(id(route))
        if known is not None and known[0] is route:
            return known[1]
        return self._matching(scope)

    def _matching(self, scope: Scope) -> str:
        """The template of the route the path leads to, for a request that put no route of the
        app's list in the scope (answered before routing, a plain route such as the docs', a
        page inside a mount): this walks the routes."""
        # As the app's router saw it: a mount changes `root_path` in the scope for its app.
        app_scope = {**scope, "root_path": scope.get("app_root_path", scope.get("root_path", ""))}
        for route in self._routes:
            if route.matches(app_scope)[0] is not Match.NONE:
                template: str = getattr(route, "path_format", UNMATCHED)
                return template
        return UNMATCHED
