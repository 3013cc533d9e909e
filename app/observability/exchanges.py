"""Outcomes of the Supabase token exchange, counted in `megapolis_supabase_exchanges_total`.

The exchange can end in many places (the rate limit and the token's shape are checked by
dependencies before the handler runs, the rest by the service), each with a named error of
`app/errors.py`. `count_exchange` wraps all of them, as the first dependency of the route, and
names the outcome from the error that ended it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.exceptions import RequestValidationError

from app.db.errors import is_database_error
from app.errors import (
    AccountDeactivated,
    AccountLinkConflict,
    InvalidSupabaseToken,
    NotAuthenticated,
    SupabaseEmailNotConfirmed,
    SupabaseEmailRequired,
    SupabaseEmailUnusable,
    SupabaseEmailUnverifiable,
    SupabaseNotConfigured,
    SupabaseUnavailable,
    SupabaseUserBanned,
    TooManyRequests,
)
from app.observability.metrics import SUPABASE_EXCHANGES

SUCCESS = "success"
# Most specific first: InvalidSupabaseToken is a NotAuthenticated.
OUTCOMES: tuple[tuple[type[Exception], str], ...] = (
    (TooManyRequests, "rate_limited"),
    (SupabaseNotConfigured, "supabase_not_configured"),
    (SupabaseUnavailable, "supabase_unavailable"),
    (InvalidSupabaseToken, "invalid_token"),
    (NotAuthenticated, "missing_token"),
    (SupabaseUserBanned, "banned"),
    (SupabaseEmailRequired, "email_required"),
    (SupabaseEmailUnusable, "email_unusable"),
    (SupabaseEmailUnverifiable, "email_unverifiable"),
    (SupabaseEmailNotConfirmed, "email_not_confirmed"),
    (AccountDeactivated, "deactivated"),
    (AccountLinkConflict, "link_conflict"),
    (RequestValidationError, "bad_request"),
)
DATABASE_UNAVAILABLE = "database_unavailable"
OTHER_ERROR = "error"
ALL_OUTCOMES = (
    SUCCESS,
    *(outcome for _, outcome in OUTCOMES),
    DATABASE_UNAVAILABLE,
    OTHER_ERROR,
)

# Every outcome is exported from the start, at 0: a rate() over a series that appears only at
# its first event misses that event.
for _outcome in ALL_OUTCOMES:
    SUPABASE_EXCHANGES.labels(_outcome)


def exchange_outcome(error: Exception | None) -> str:
    if error is None:
        return SUCCESS
    for error_class, outcome in OUTCOMES:
        if isinstance(error, error_class):
            return outcome
    return DATABASE_UNAVAILABLE if is_database_error(error) else OTHER_ERROR


async def count_exchange() -> AsyncIterator[None]:
    """A dependency: counts the exchange once, with its outcome, however it ends (a client that
    leaves mid-exchange is not counted)."""
    try:
        yield
    except Exception as error:
        SUPABASE_EXCHANGES.labels(exchange_outcome(error)).inc()
        raise
    SUPABASE_EXCHANGES.labels(SUCCESS).inc()
