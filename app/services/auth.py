"""Sign-in with Supabase: a Supabase access token in, the API's own token out."""

from __future__ import annotations

import logging
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.config import Settings
from app.errors import (
    AccountDeactivated,
    AccountLinkConflict,
    SupabaseEmailNotConfirmed,
    SupabaseEmailRequired,
    SupabaseEmailUnusable,
    SupabaseEmailUnverifiable,
    SupabaseUserBanned,
)
from app.models.user import User
from app.schemas.auth import SupabaseTokenExchange
from app.schemas.user import UserSummary
from app.security import issue_token
from app.services.audit_event import Actor, record
from app.supabase.client import SupabaseAuth
from app.supabase.identity import SupabaseIdentity, is_usable_email

logger = logging.getLogger("app.supabase")

# Each attempt re-reads what a concurrent sign-in committed; two always suffice in practice.
ATTEMPTS = 3

EMAIL_NOT_CONFIRMED = (
    "An account with this email already exists: confirm the email in Supabase to link the account"
)
EMAIL_LINKED_ELSEWHERE = "An account with this email is already linked to another Supabase user"
CONCURRENT_CHANGE = "The account changed during sign-in; try again"


class AuthService:
    @staticmethod
    async def exchange_supabase_token(
        session: AsyncSession,
        settings: Settings,
        supabase: SupabaseAuth,
        token: str,
    ) -> SupabaseTokenExchange:
        """Verify the Supabase access `token`, find, link or create its user, and issue an API
        token for that user. Taking the token from the request is the route's job
        (`app.dependencies.SupabaseToken`)."""
        identity = await supabase.verify(token)
        user = await user_for_identity(session, supabase, token, identity)
        issued = issue_token(settings, user)
        return SupabaseTokenExchange(
            token=issued.token,
            user=UserSummary(id=user.id, email=user.email),
            expires_at=issued.expires_at,
        )


async def user_for_identity(
    session: AsyncSession, supabase: SupabaseAuth, token: str, identity: SupabaseIdentity
) -> User:
    """The active user linked to this Supabase user: found by `supabase_id`, else the unlinked
    user with the same email, linked now when Supabase has confirmed that email, else a new user
    when it has. An unconfirmed email claims nothing: 409 when the address has an account
    (confirm it to link), 403 when it has none (confirm it first).

    Race-safe: when a concurrent sign-in inserts or links first, the unique constraints or the
    conditional link refuse our write; we roll back and read again, so every racer for one
    Supabase user ends with the same row, and only one identity links an account."""
    for _ in range(ATTEMPTS):
        check_identity(identity)
        user = await User.get_by_supabase_id(session, identity.id)
        if user is not None:
            return active(user)
        holder = await User.get_by_email(session, identity.email)
        needs_confirmation = holder is None or holder.supabase_id is None
        if needs_confirmation and identity.email_confirmed is None:
            # A locally verified token does not say whether the email is confirmed: ask Supabase,
            # outside the transaction (SQLite would hold its write lock over the call).
            await session.rollback()
            identity = await fetch_confirmation(supabase, token)
            continue
        try:
            user = await link_or_create(session, identity, holder)
            await session.commit()
        except (IntegrityError, LinkLost):
            # Read again: the account is now linked to us (200), or to another identity (409).
            await session.rollback()
            continue
        return user
    raise AccountLinkConflict(CONCURRENT_CHANGE)


def check_identity(identity: SupabaseIdentity) -> None:
    """Refuse a Supabase account that can never sign in here, whatever the local rows say."""
    if identity.banned:
        raise SupabaseUserBanned()
    if not identity.email:
        raise SupabaseEmailRequired()
    if not is_usable_email(identity.email):
        raise SupabaseEmailUnusable()


async def fetch_confirmation(supabase: SupabaseAuth, token: str) -> SupabaseIdentity:
    """The identity as `/auth/v1/user` gives it, with `email_confirmed_at`."""
    if not supabase.can_fetch_user:
        logger.warning(
            "A new Supabase user signed in, but with local token verification and no "
            "SUPABASE_PUBLISHABLE_KEY (or SUPABASE_SERVICE_ROLE_KEY) the API cannot ask Supabase "
            "whether the email is confirmed: refused (403)"
        )
        raise SupabaseEmailUnverifiable()
    return await supabase.fetch_identity(token)


async def link_or_create(
    session: AsyncSession, identity: SupabaseIdentity, holder: User | None
) -> User:
    """Flush the link to `holder` (the user with the identity's email), or a new user."""
    if holder is None:
        if not identity.email_confirmed:
            raise SupabaseEmailNotConfirmed()
        return await User.create(
            session,
            email=identity.email,
            supabase_id=identity.id,
            full_name=identity.full_name,
        )
    if holder.supabase_id == identity.id:
        return active(holder)  # a concurrent sign-in committed it between our two reads
    if holder.supabase_id is not None:
        raise AccountLinkConflict(EMAIL_LINKED_ELSEWHERE)
    if not identity.email_confirmed:
        raise AccountLinkConflict(EMAIL_NOT_CONFIRMED)
    active(holder)
    if not await claim_link(session, holder, identity.id):
        raise LinkLost()
    # Audited although the account's own sign-in makes it: it is the moment a Supabase identity
    # takes over an account that someone else (a superuser, the CLI) made.
    link = {"supabase_id": [None, identity.id]}
    record(session, Actor.of(holder), "user.link", "user", holder.id, link)
    return holder


class LinkLost(Exception):
    """Another sign-in linked (or changed) the account between our read and our write."""


async def claim_link(session: AsyncSession, holder: User, supabase_id: str) -> bool:
    """Link `holder` to `supabase_id` only if it is still unlinked, active and holds the same
    email, in one conditional UPDATE: concurrent sign-ins for one account cannot all win (an
    unconditional UPDATE lets each overwrite the last, and each would get a token). On
    PostgreSQL the losers' UPDATE waits for the winner's row lock, then matches no row."""
    statement = (
        update(User)
        .where(
            User.id == holder.id,
            User.supabase_id.is_(None),
            User.is_active.is_(True),
            User.email == holder.email,
        )
        .values(supabase_id=supabase_id)
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    if result.rowcount != 1:
        return False
    # What the row now holds, without marking it changed (the UPDATE is done).
    set_committed_value(holder, "supabase_id", supabase_id)
    return True


def active(user: User) -> User:
    if not user.is_active:
        raise AccountDeactivated()
    return user
