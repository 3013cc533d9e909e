"""Keeping up with Supabase: what a change of `auth.users` (a Database Webhook) does to the
local account linked to that Supabase user.

- DELETE of the auth user (or a soft delete, `deleted_at` set): deactivated, unlinked
  (`supabase_id` cleared) and its tokens revoked; its data is kept;
- UPDATE that bans the user (`banned_until` changed, in the future): tokens revoked;
- UPDATE that confirms a new email: the local email is updated when the address is free (and
  tokens revoked, as for any email change); else kept, with a warning in the log;
- anything else, or no linked account: nothing.

The same call twice does no more than once: a DELETE unlinks, so its replay finds no account; an
email already updated is not updated again. A replayed ban revokes again only the tokens issued
since the first call, and the exchange issues none to a banned user (see docs/supabase.md).
Log lines name users by id, never by email. Each change is audited (app/services/audit.py) as
made by the actor the caller names: `webhook` for the Database Webhook, `sync` for
`manage.py sync-supabase`; a Supabase deletion is `user.deactivate`, a ban
`user.revoke_tokens`, a new email `user.update`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import User
from app.schemas.supabase_webhook import AuthUserRecord, SupabaseUserEvent
from app.services.audit import Actor, Changes, record
from app.supabase.identity import is_usable_email, supabase_email

logger = logging.getLogger("app.supabase")


class SupabaseSync:
    @staticmethod
    async def apply(session: AsyncSession, event: SupabaseUserEvent, actor: Actor) -> None:
        if event.type == "DELETE" and event.old_record is not None:
            await deleted(session, event.old_record, actor)
        elif event.type == "UPDATE" and event.record is not None and event.old_record is not None:
            await updated(session, event.record, event.old_record, actor)
        # INSERT: the account is made at the user's first sign-in, not before.


async def deleted(session: AsyncSession, row: AuthUserRecord, actor: Actor) -> None:
    user = await User.get_by_supabase_id(session, row.supabase_id)
    if user is None:
        return
    changes: Changes = {
        "is_active": [user.is_active, False],
        "supabase_id": [user.supabase_id, None],
    }
    record(session, actor, "user.deactivate", "user", user.id, changes)
    user.is_active = False
    user.supabase_id = None
    user.revoke_tokens()
    await session.commit()
    logger.info("Supabase user deleted: local user %s deactivated and unlinked", user.id)


async def updated(
    session: AsyncSession, row: AuthUserRecord, old: AuthUserRecord, actor: Actor
) -> None:
    if row.deleted_at is not None:
        await deleted(session, row, actor)  # a soft delete: the Supabase user is gone all the same
        return
    user = await User.get_by_supabase_id(session, row.supabase_id)
    if user is None:
        return
    if bans(row, old):
        user.revoke_tokens()
        record(session, actor, "user.revoke_tokens", "user", user.id)
        await session.commit()
        logger.info("Supabase user banned: tokens of local user %s revoked", user.id)
    if confirms_new_email(row, old):
        await take_email(session, user, row, actor)


def bans(row: AuthUserRecord, old: AuthUserRecord) -> bool:
    """This UPDATE set a ban (or a new end to one) that is still running."""
    now = datetime.now(timezone.utc)
    return (
        row.banned_until is not None
        and row.banned_until > now
        and row.banned_until != old.banned_until
    )


def confirms_new_email(row: AuthUserRecord, old: AuthUserRecord) -> bool:
    """The row's email is confirmed, and it was not, or it is another address than before."""
    if row.email_confirmed_at is None or not row.email:
        return False
    if old.email_confirmed_at is None:
        return True
    return supabase_email(old.email or "") != supabase_email(row.email)


async def take_email(session: AsyncSession, user: User, row: AuthUserRecord, actor: Actor) -> None:
    email = supabase_email(row.email or "")
    if email == user.email:
        return
    if not is_usable_email(email):
        logger.warning(
            "Supabase user %s confirmed an email with whitespace or control characters, or an "
            "invalid domain: local user %s keeps its email",
            row.supabase_id,
            user.id,
        )
        return
    holder = await User.get_by_email(session, email)
    if holder is not None:
        logger.warning(
            "Supabase user %s confirmed an email that local user %s already has: local user %s "
            "keeps its email",
            row.supabase_id,
            holder.id,
            user.id,
        )
        return
    record(session, actor, "user.update", "user", user.id, {"email": [user.email, email]})
    user.email = email
    user.revoke_tokens()  # a token must not outlive the address it was issued for
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        logger.warning(
            "Supabase user %s confirmed an email another local user took meanwhile: local user "
            "%s keeps its email",
            row.supabase_id,
            user.id,
        )
        return
    logger.info(
        "Supabase user %s confirmed a new email: local user %s updated", row.supabase_id, user.id
    )
