"""Every FastAPI dependency a route may take, in one place:

- `SettingsDep`: the app's settings;
- `SessionDep`: the request's session, for routes that change data (services commit);
- `ReadSessionDep`: a session for routes that only read: each query runs on its own, outside a
  transaction (one round trip, no BEGIN/ROLLBACK); it refuses to write;
- `SupabaseAuthDep`: the Supabase client (token verification); `SupabaseToken`: the Supabase
  access token the request carries (401 when missing or malformed, before Supabase is asked);
- `LimitExchange`: `RATE_LIMIT_EXCHANGE` per client address (429), for `dependencies=[...]`;
  `CountExchange`: counts each exchange by outcome (the metrics), also for `dependencies=[...]`;
- `CurrentUser`: the active user behind the API token (401 otherwise); `Superuser`: the same,
  and a superuser (403 otherwise);
- `owner_or_superuser(load)`: turns a dependency that loads a row (404 when missing) into one
  that also requires the caller to own the row or be a superuser (403);
- `PageParamsDep`: the page a list route serves (`limit`, and `cursor` or `offset`), for
  `app.db.pagination.paginate`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.authentication import authenticate, verify_token
from app.config import Settings
from app.db.database import Database
from app.db.pagination import (
    DEFAULT_LIMIT,
    MAX_CURSOR_LENGTH,
    MAX_LIMIT,
    MAX_OFFSET,
    PageParams,
    cursor_key,
)
from app.errors import (
    InvalidSupabaseToken,
    NotAuthenticated,
    PermissionDenied,
    TooManyRequests,
)
from app.logging import identify_user
from app.models.user import User
from app.observability.exchanges import count_exchange
from app.rate_limit.client import client_address
from app.rate_limit.limiter import EXCHANGE, RateLimiter
from app.supabase.client import SupabaseAuth
from app.supabase.token_extraction import TokenExtractionError, TokenMissing, extract_token

logger = logging.getLogger("app.db")


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request. Services commit; anything left open is rolled back when the
    session closes (after the response)."""
    database: Database = request.app.state.database
    session = database.sessionmaker()
    try:
        yield session
    finally:
        await close_quietly(session)


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.database
    session = database.read_sessionmaker()
    try:
        yield session
    finally:
        await close_quietly(session)


async def close_quietly(session: AsyncSession) -> None:
    try:
        await session.close()
    except (SQLAlchemyError, OSError, asyncio.TimeoutError) as exc:
        # The connection died while it was being released (this can run after the response was
        # sent): it is already discarded from the pool; nothing is left to tell anyone.
        logger.warning("Database connection lost while releasing it: %s", type(exc).__name__)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]


async def get_supabase_auth(request: Request) -> SupabaseAuth:
    """The app's Supabase client (one per app, made in the lifespan)."""
    supabase: SupabaseAuth = request.app.state.supabase
    return supabase


SupabaseAuthDep = Annotated[SupabaseAuth, Depends(get_supabase_auth)]


async def get_supabase_token(request: Request, supabase: SupabaseAuthDep) -> str:
    """The Supabase access token in `Authorization: Bearer` or the `sb-<ref>-auth-token`
    header(s), in any format supabase-js writes (app/supabase/token_extraction.py); Authorization
    wins. 503 when Supabase is not configured, 401 when there is no token, 401 `invalid_token`
    when a header value is not a well-formed token. Only its shape is checked here: verifying it
    is `SupabaseAuth.verify`'s job."""
    supabase.ensure_configured()
    try:
        return extract_token(request.headers, supabase.project_ref)
    except TokenMissing as exc:
        raise NotAuthenticated(str(exc)) from exc
    except TokenExtractionError as exc:
        raise InvalidSupabaseToken(str(exc)) from exc


SupabaseToken = Annotated[str, Depends(get_supabase_token)]


async def limit_exchange(request: Request) -> None:
    """`RATE_LIMIT_EXCHANGE` per client address; over it, 429 with `Retry-After`. Listed in the
    route decorator, it runs before the handler's own dependencies, so a refused request costs
    one counter lookup: no database connection, no call to Supabase."""
    limiter: RateLimiter = request.app.state.rate_limiter
    retry_after = await limiter.hit(EXCHANGE, client_address(request))
    if retry_after is not None:
        raise TooManyRequests(retry_after)


LimitExchange = Depends(limit_exchange)

# Counts each exchange by outcome (app/observability/exchanges.py); first in `dependencies=[...]`,
# so that it sees the outcomes of the dependencies after it (429, 401, 503) too.
CountExchange = Depends(count_exchange)


class BearerUser(HTTPBearer):
    """The API's bearer-token security scheme, resolving straight to the caller (see
    `app/authentication.py`). One dependency, not a scheme plus a function that depends on it,
    because it runs on every authenticated request; OpenAPI still shows the scheme.

    `check_before_body`: the request limits (`app/middlewares/body_gate.py`) refuse a request
    without a well-signed, unexpired token before its body is read, so an anonymous client holds
    no part of the body budget; an admitted body counts against its user's share."""

    reserved_body_lane = False

    def check_before_body(self, request: Request) -> str:
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated()  # as HTTPBearer reads the header
        claims = verify_token(request.app.state.settings, token)
        return f"user:{claims.user_id}"

    async def __call__(self, request: Request) -> User:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None:
            raise NotAuthenticated()
        user = await authenticate(
            request.app.state.database, request.app.state.settings, credentials.credentials
        )
        identify_user(user.id)  # the request's log lines carry the caller's id from here on
        return user


# auto_error=False: we answer 401 ourselves, whatever FastAPI version decides for missing headers.
get_current_user = BearerUser(
    auto_error=False, scheme_name="APIToken", description="The API's own token"
)
CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise PermissionDenied("Superuser privileges required")
    return user


Superuser = Annotated[User, Depends(require_superuser)]


class Owned(Protocol):
    @property
    def owner_id(self) -> int: ...


OwnedT = TypeVar("OwnedT", bound=Owned)


def check_owner_or_superuser(caller: User, owner_id: int) -> None:
    """The one rule of who may change a row (and see a user's record): its owner, or a
    superuser; 403 for anyone else. Routes apply it through `owner_or_superuser`; nothing else
    (no service) checks who the caller is for a row."""
    if owner_id != caller.id and not caller.is_superuser:
        raise PermissionDenied("Only its owner or a superuser may do this")


def owner_or_superuser(load: Callable[..., Awaitable[OwnedT]]) -> Callable[..., Awaitable[OwnedT]]:
    """A dependency giving the row `load` gives (its own 404 included), when the caller owns it
    or is a superuser; 403 otherwise. The caller is checked first: no token is a 401, whatever
    the id. Use it for every route that changes a row of a user-owned resource:

        EditablePost = Annotated[Post, Depends(owner_or_superuser(post_for_change))]
    """

    async def owned_row(caller: CurrentUser, row: OwnedT = Depends(load)) -> OwnedT:
        check_owner_or_superuser(caller, row.owner_id)
        return row

    return owned_row


# The query parameters that choose a page; every other one (a filter) is part of the cursor's scope.
PAGE_QUERY = frozenset({"limit", "offset", "cursor"})


async def page_params(
    request: Request,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page")] = DEFAULT_LIMIT,
    offset: Annotated[
        int | None,
        Query(ge=0, le=MAX_OFFSET, description="Rows to skip (not with `cursor`)"),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_LENGTH,
            description="The `next_cursor` of the page before (not with `offset`)",
        ),
    ] = None,
) -> PageParams:
    """The page a list route serves. A cursor works only on the path and with the filters (every
    other query parameter) of the list that gave it; 422 otherwise, or with both `cursor` and
    `offset` (`app.db.pagination.InvalidPageRequest`)."""
    filters = sorted(
        (name, value)
        for name, value in request.query_params.multi_items()
        if name not in PAGE_QUERY
    )
    scope = json.dumps([request.url.path, filters], separators=(",", ":"))
    return PageParams(
        key=cursor_key(settings.jwt_secret), limit=limit, offset=offset, cursor=cursor, scope=scope
    )


PageParamsDep = Annotated[PageParams, Depends(page_params)]
