"""Keeping up with Supabase: what a Supabase user's state does to the local account linked to it.

One implementation, two callers:
- `SupabaseSync.apply`: a Database Webhook call for `auth.users` (`POST /auth/supabase/webhook`);
- `SupabaseSync.run`: `manage.py sync-supabase`, which walks Supabase's admin user list and
  repairs what a lost webhook call left undone (Supabase does not retry a failed call).

For a linked account:
- its Supabase user is gone (deleted, or soft-deleted: `deleted_at` set): deactivated, unlinked
  (`supabase_id` cleared) and its tokens revoked; its data is kept;
- banned (`banned_until` in the future): tokens revoked, once per ban: `User.supabase_banned_until`
  records the ban applied, so a replayed call or every later sync leaves alone the tokens issued
  since (the exchange issues none while the ban lasts, see docs/supabase.md);
- a confirmed email that is not the local one: the local email takes it when no other account
  has it (and tokens are revoked, as for any email change); else it is kept, with a warning;
- anything else, or no linked account: nothing.

The webhook takes an email only from the UPDATE that confirmed it (the email is new in it); the
sync compares states: for a linked account, the Supabase user's confirmed email is the truth.
Both are idempotent: a deleted user's account is unlinked (found no more), a ban is recorded, an
email taken is the local one. Each account's changes are one transaction, made through
functions that take the session. Lines name users by id, never by email.

Each change is audited in its transaction (app/services/audit_event.py), as made by `webhook` or
`sync`: a Supabase deletion is `user.deactivate`, a ban `user.revoke_tokens`, a new email
`user.update`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import User
from app.schemas.supabase_webhook import AuthUserRecord, SupabaseUserEvent
from app.services.audit_event import SYNC, Actor, Changes, plain, record
from app.supabase.identity import is_usable_email, supabase_email

logger = logging.getLogger("app.supabase")

ChangeKind = Literal["deactivated", "revoked", "updated"]


@dataclass
class Change:
    """What happens (or, in a dry run, would happen) to one linked local account."""

    user_id: int
    supabase_id: str
    deactivate: bool = False
    ban_until: datetime | None = None
    """The ban whose revocation is applied now."""
    new_email: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def kind(self) -> ChangeKind | None:
        """The first that applies: an account is counted once."""
        if self.deactivate:
            return "deactivated"
        if self.ban_until is not None:
            return "revoked"
        if self.new_email is not None:
            return "updated"
        return None

    def lines(self, *, dry_run: bool = False) -> list[str]:
        """One line per change, naming the user by id."""
        who = f"user {self.user_id} (Supabase user {self.supabase_id})"
        would = "would be " if dry_run else ""
        lines = []
        if self.deactivate:
            lines.append(f"{who}: gone from Supabase: {would}deactivated, unlinked, tokens revoked")
        if self.ban_until is not None:
            until = self.ban_until.isoformat(timespec="seconds")
            lines.append(f"{who}: banned until {until}: tokens {would}revoked")
        if self.new_email is not None:
            lines.append(
                f"{who}: confirmed a new email: local email {would}updated, tokens revoked"
            )
        return lines

    def drop_email(self, reason: str) -> None:
        self.new_email = None
        self.warnings.append(self.keeps_email(reason))

    def keeps_email(self, reason: str) -> str:
        return (
            f"Supabase user {self.supabase_id} {reason}: local user {self.user_id} keeps its email"
        )


@dataclass
class SyncTotals:
    checked: int = 0
    deactivated: int = 0
    revoked: int = 0
    updated: int = 0

    def count(self, kind: ChangeKind) -> None:
        setattr(self, kind, getattr(self, kind) + 1)

    def summary(self) -> str:
        return (
            f"sync-supabase: checked {self.checked}, deactivated {self.deactivated}, "
            f"revoked {self.revoked}, updated {self.updated}"
        )


class SupabaseAdminUsers(Protocol):
    """What `SupabaseSync.run` needs of Supabase (app/supabase/admin.py `SupabaseAdmin`)."""

    def users(self, per_page: int) -> AsyncIterable[dict[str, Any]]: ...

    async def user(self, supabase_id: str) -> dict[str, Any] | None: ...


class SupabaseSync:
    @staticmethod
    async def apply(session: AsyncSession, event: SupabaseUserEvent, actor: Actor) -> None:
        """A Database Webhook call: its effect, logged and audited as made by `actor`."""
        change = None
        if event.type == "DELETE" and event.old_record is not None:
            change = await reconcile(session, event.old_record.supabase_id, None, actor=actor)
        elif event.type == "UPDATE" and event.record is not None and event.old_record is not None:
            change = await reconcile(
                session,
                event.record.supabase_id,
                event.record,
                email_is_news=confirms_new_email(event.record, event.old_record),
                actor=actor,
            )
        # INSERT: the account is made at the user's first sign-in, not before.
        if change is not None:
            for line in change.lines():
                logger.info("Supabase webhook: %s", line)
            for warning in change.warnings:
                logger.warning("%s", warning)

    @staticmethod
    async def run(
        session: AsyncSession,
        supabase: SupabaseAdminUsers,
        *,
        per_page: int,
        max_deactivations: int,
        dry_run: bool = False,
        echo: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> SyncTotals:
        """Walk Supabase's user list, then apply its state to every linked account (one
        transaction each).

        A linked account whose Supabase user the list did not show is asked for by id before it
        counts as gone: a list paged by offset can skip a user when others are deleted during
        the walk, and a skipped user must not cost an account. More than `max_deactivations`
        accounts gone at once (a SUPABASE_URL pointing at another project would make every one
        of them gone) is refused before anything changes: TooManyDeactivations."""
        totals = SyncTotals()
        listed: dict[str, AuthUserRecord | None] = {}  # None: listed, but unreadable
        async for user in supabase.users(per_page):
            supabase_id, record = read_user(user, warn)
            if supabase_id is not None:
                listed[supabase_id] = record
        totals.checked = len(listed)
        states: list[tuple[str, AuthUserRecord | None]] = []  # None: the user is gone
        for supabase_id in await linked_supabase_ids(session):
            if supabase_id not in listed:
                found = await supabase.user(supabase_id)
                if found is None:
                    states.append((supabase_id, None))
                    continue
                totals.checked += 1
                listed[supabase_id] = read_user(found, warn)[1]
            record = listed[supabase_id]
            if record is not None:  # an unreadable user (warned about) is left as it is
                states.append((supabase_id, record))
        gone = sum(1 for _, record in states if record is None or record.deleted_at is not None)
        if gone > max_deactivations:
            if not dry_run:
                raise TooManyDeactivations(gone, max_deactivations)
            warn(TooManyDeactivations(gone, max_deactivations).args[0])
        for supabase_id, record in states:
            change = await reconcile(session, supabase_id, record, dry_run=dry_run, actor=SYNC)
            if change is None:
                continue
            for line in change.lines(dry_run=dry_run):
                echo(line)
            for warning in change.warnings:
                warn(warning)
            if change.kind is not None:
                totals.count(change.kind)
        return totals


class TooManyDeactivations(Exception):
    def __init__(self, gone: int, limit: int) -> None:
        super().__init__(
            f"{gone} linked accounts would be deactivated (their Supabase users are gone), more "
            f"than --max-deactivations {limit}: is SUPABASE_URL this API's project? If so, run "
            "again with a larger --max-deactivations; nothing was changed"
        )


def read_user(
    user: dict[str, Any], warn: Callable[[str], None]
) -> tuple[str | None, AuthUserRecord | None]:
    """(its id, the record) of a user of Supabase's admin list; the record is None (and a
    warning said so) when it cannot be read, the id too when it is not a UUID."""
    try:
        record = AuthUserRecord.model_validate(user)
    except ValidationError as exc:
        supabase_id = readable_id(user.get("id"))
        fields = ", ".join(sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]}))
        warn(
            f"Supabase user {supabase_id or '(no usable id)'} has unreadable fields ({fields}): "
            "left as it is"
        )
        return supabase_id, None
    return record.supabase_id, record


def readable_id(value: object) -> str | None:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        return None


async def linked_supabase_ids(session: AsyncSession) -> list[str]:
    result = await session.scalars(
        select(User.supabase_id).where(User.supabase_id.is_not(None)).order_by(User.id)
    )
    ids = [supabase_id for supabase_id in result if supabase_id is not None]
    await session.rollback()  # no transaction held while Supabase is asked
    return ids


async def reconcile(
    session: AsyncSession,
    supabase_id: str,
    record: AuthUserRecord | None,
    *,
    email_is_news: bool = True,
    dry_run: bool = False,
    actor: Actor,
) -> Change | None:
    """Bring the account linked to `supabase_id` in line with `record` (None: the Supabase user
    no longer exists), in one transaction. `email_is_news`: whether the record's confirmed email
    may be taken (the webhook: only from the UPDATE that confirmed it). None: no linked
    account."""
    user = await User.get_by_supabase_id(session, supabase_id)
    if user is None:
        await session.rollback()
        return None
    change = await plan(session, user, record, email_is_news=email_is_news)
    if dry_run or change.kind is None:
        await session.rollback()
        return change
    make(session, user, change, actor)
    try:
        await session.commit()
    except IntegrityError:
        # Another account took the address between our check and our write.
        await session.rollback()
        change.drop_email("confirmed an email another local user took meanwhile")
        user = await User.get_by_supabase_id(session, supabase_id)
        if user is None or change.kind is None:
            await session.rollback()
            return change
        make(session, user, change, actor)
        await session.commit()
    return change


async def plan(
    session: AsyncSession, user: User, record: AuthUserRecord | None, *, email_is_news: bool
) -> Change:
    change = Change(user_id=user.id, supabase_id=user.supabase_id or "")
    if record is None or record.deleted_at is not None:
        change.deactivate = True  # a soft delete: the Supabase user is gone all the same
        return change
    if is_new_ban(user, record):
        change.ban_until = record.banned_until
    if email_is_news and record.email_confirmed_at is not None and record.email:
        await plan_email(session, user, record.email, change)
    return change


def is_new_ban(user: User, record: AuthUserRecord) -> bool:
    """A ban that is still running and has not been applied to this account yet."""
    banned_until = record.banned_until
    return (
        banned_until is not None
        and banned_until > datetime.now(timezone.utc)
        and banned_until != user.supabase_banned_until
    )


async def plan_email(session: AsyncSession, user: User, email: str, change: Change) -> None:
    email = supabase_email(email)
    if email == user.email:
        return
    if not is_usable_email(email):
        change.warnings.append(
            change.keeps_email(
                "confirmed an email with whitespace or control characters, or an invalid domain"
            )
        )
        return
    holder = await User.get_by_email(session, email)
    if holder is not None:
        change.warnings.append(
            change.keeps_email(f"confirmed an email that local user {holder.id} already has")
        )
        return
    change.new_email = email


def make(session: AsyncSession, user: User, change: Change, actor: Actor) -> None:
    """The planned change, on the session's `user`, and its audit events (committed by the
    caller)."""
    audit(session, user, change, actor)
    if change.deactivate:
        user.is_active = False
        user.supabase_id = None
    if change.ban_until is not None:
        user.supabase_banned_until = change.ban_until
    if change.new_email is not None:
        user.email = change.new_email  # a token must not outlive the address it was issued for
    if change.kind is not None:
        user.revoke_tokens()


def audit(session: AsyncSession, user: User, change: Change, actor: Actor) -> None:
    if change.deactivate:
        gone: Changes = {
            "is_active": [user.is_active, False],
            "supabase_id": [user.supabase_id, None],
        }
        record(session, actor, "user.deactivate", "user", user.id, gone)
    if change.ban_until is not None:
        ban = {
            "supabase_banned_until": [plain(user.supabase_banned_until), plain(change.ban_until)]
        }
        record(session, actor, "user.revoke_tokens", "user", user.id, ban)
    if change.new_email is not None:
        record(
            session,
            actor,
            "user.update",
            "user",
            user.id,
            {"email": [user.email, change.new_email]},
        )


def confirms_new_email(row: AuthUserRecord, old: AuthUserRecord) -> bool:
    """The row's email is confirmed, and it was not, or it is another address than before."""
    if row.email_confirmed_at is None or not row.email:
        return False
    if old.email_confirmed_at is None:
        return True
    return supabase_email(old.email or "") != supabase_email(row.email)
