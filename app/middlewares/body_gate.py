"""Which requests may send a body at all, decided from the request line and headers alone.

A body costs the server memory and a slot of the shared body budget while it arrives
(`request_limits.py`); FastAPI reads it before any dependency runs, so without this gate a
request that would end in 401 held its slot first, and 32 anonymous connections that declared
1 MiB each and sent nothing filled the budget for everyone (issue 13). Here:

- a path that no route serves in full (unknown path, other method, a slash to redirect) goes
  to the app with its body unread: the app answers 404/405/307 without reading it;
- a route whose dependencies can refuse a request from its headers (`ChecksBeforeBody`: the
  API token's signature and expiry, the webhook's secret) is refused here, before its body;
- what is admitted says whose share of the budget the body counts against (the signed-in user,
  besides the address) and whether it has a lane of its own (the webhook, once its secret is
  proven).

The checks are found in each route's own dependencies, so every resource (generated ones
included) is gated without listing anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope


@runtime_checkable
class ChecksBeforeBody(Protocol):
    """A dependency that can judge a request by its headers alone. `check_before_body` raises
    the `HTTPException` the dependency itself would raise, or returns the holder the body counts
    against (e.g. `user:42`) or None. `reserved_body_lane`: a body past this check has a budget
    of its own (for a caller that proved a shared secret)."""

    reserved_body_lane: bool

    def check_before_body(self, request: Request) -> str | None: ...


@dataclass(frozen=True)
class Admitted:
    """May send its body: counted against `holders` (besides its address), in the reserved
    lane or the shared one."""

    holders: tuple[str, ...] = ()
    reserved_lane: bool = False


@dataclass(frozen=True)
class Refused:
    status: int
    detail: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


class BodyGate:
    """`routes`: the app's route list (every route of the API is on it, with its whole path:
    `app/router.py`; and the docs, mounts such as an admin site), read as it is at each
    request. Each route's checks are found once, the first time it serves.

    A path without parameters (`/api/v1/users/me`) leads, for one method, always to the same
    route: that route is remembered, and the next request there does not walk the list (about
    1 µs a route; the router walks it again after this). A path with parameters is walked
    each time, so nothing remembered grows with the ids clients send."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        # By id (a route is not hashable), the route kept with them: its id stays its own.
        self._checks: dict[int, tuple[BaseRoute, tuple[ChecksBeforeBody, ...]]] = {}
        self._fixed: dict[tuple[str, str], BaseRoute] = {}  # (method, path): its route
        self._fixed_for = 0  # how many routes the list had when they were remembered

    def judge(self, scope: Scope) -> Admitted | Refused | None:
        """None: no route serves this request in full (the body need not be read)."""
        route = self._route_of(scope)
        return None if route is None else run_checks(self._checks_of(route), scope)

    def _route_of(self, scope: Scope) -> BaseRoute | None:
        if len(self._routes) != self._fixed_for:  # routes added since: remember anew
            self._fixed.clear()
            self._fixed_for = len(self._routes)
        key = (scope["method"], scope["path"])
        route = self._fixed.get(key)
        if route is not None:
            return route
        for route in self._routes:
            if isinstance(route, (Route, Mount)) and route.matches(scope)[0] is Match.FULL:
                if isinstance(route, Route) and not route.param_convertors:
                    self._fixed[key] = route
                return route
        return None

    def _checks_of(self, route: BaseRoute) -> tuple[ChecksBeforeBody, ...]:
        known = self._checks.get(id(route))
        if known is None:
            known = self._checks[id(route)] = (route, tuple(checks_of(route)))
        return known[1]


def run_checks(checks: tuple[ChecksBeforeBody, ...], scope: Scope) -> Admitted | Refused:
    request = Request(scope)  # headers only: nothing here may read the body
    holders: list[str] = []
    for check in checks:
        try:
            holder = check.check_before_body(request)
        except HTTPException as exc:
            headers = tuple(
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in (exc.headers or {}).items()
            )
            return Refused(exc.status_code, str(exc.detail), headers)
        if holder is not None:
            holders.append(holder)
    return Admitted(tuple(holders), any(check.reserved_body_lane for check in checks))


def checks_of(route: BaseRoute) -> Iterator[ChecksBeforeBody]:
    """The header checks among a route's dependencies, each once, outermost first."""
    if not isinstance(route, APIRoute):
        return
    seen: set[int] = set()
    for call in dependency_calls(route.dependant):
        if isinstance(call, ChecksBeforeBody) and id(call) not in seen:
            seen.add(id(call))
            yield call


def dependency_calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from dependency_calls(sub)
