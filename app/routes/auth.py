from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import HTTPBearer

from app.dependencies import (
    CountExchange,
    CurrentUser,
    LimitExchange,
    SessionDep,
    SettingsDep,
    SupabaseAuthDep,
    SupabaseToken,
)
from app.logging import identify_user
from app.schemas.auth import SupabaseTokenExchange
from app.schemas.errors import responses
from app.schemas.user import CurrentUserResponse, UserSummary
from app.services.audit_event import Actor
from app.services.auth import AuthService
from app.services.user import UserService

router = APIRouter(prefix="/auth", tags=["auth"])

# For the OpenAPI schema (Swagger's "Authorize"); `SupabaseToken` reads the headers itself, because
# the token may also come in the `sb-<project-ref>-auth-token` header.
supabase_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="SupabaseAccessToken",
    description="A Supabase access token (`session.access_token` in supabase-js)",
)


@router.get(
    "/verify_supabase_token",
    response_model=SupabaseTokenExchange,
    responses=responses(401, 403, 409, 429, 503),
    # CountExchange first, to count every outcome; then LimitExchange: over
    # RATE_LIMIT_EXCHANGE, 429 before anything else runs.
    dependencies=[CountExchange, LimitExchange, Depends(supabase_bearer)],
)
async def verify_supabase_token(
    token: SupabaseToken, session: SessionDep, settings: SettingsDep, supabase: SupabaseAuthDep
) -> SupabaseTokenExchange:
    """Exchange a Supabase access token for the API's own token.

    Send the Supabase token as `Authorization: Bearer <token>`, or as the header
    `sb-<project-ref>-auth-token` holding what supabase-js stores under that key (the raw token,
    the session JSON, `base64-…`, percent-encoded, or split over `.0`, `.1`, …). Authorization
    wins when both are sent.

    401: missing, malformed, invalid, expired or signed-out token, deleted or banned Supabase user.
    403: the Supabase account has no email address, or one with whitespace or control
    characters; no account has this email yet and Supabase has not confirmed it (confirm it
    first); Supabase reports the user banned; the user is deactivated.
    409: the email belongs to an existing user and is not confirmed in Supabase (confirm it to
    link the account), or that user is linked to another Supabase user.
    429: too many exchanges from this address (`RATE_LIMIT_EXCHANGE`); `Retry-After` says when
    to try again.
    503: Supabase is not configured, unreachable, too slow, or refused this server's key.
    """
    exchange = await AuthService.exchange_supabase_token(session, settings, supabase, token)
    identify_user(exchange.user.id)
    return exchange


@router.get("/me", response_model=CurrentUserResponse, responses=responses(401, 503))
async def read_me(user: CurrentUser) -> CurrentUserResponse:
    """The user behind the API token."""
    return CurrentUserResponse(user=UserSummary(id=user.id, email=user.email))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401, 503))
async def logout(user: CurrentUser, session: SessionDep) -> Response:
    """Sign out everywhere: every API token of the caller issued so far answers 401 from now on
    (this one included). A token from a new exchange works at once."""
    await UserService.revoke_tokens(session, Actor.of(user), user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
