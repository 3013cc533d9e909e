"""The audit log: who changed an account or a post that is not theirs, and what they changed.

Every service that changes an account or a post takes the `Actor` that makes the change (the
route, the admin site, the webhook, `sync-supabase` or the CLI says who it is; nothing guesses)
and calls `record` before it commits: the row is part of the change's transaction, so a change
is never without its trace, nor a trace without its change. Changes an owner makes to what is
their own (a user renaming themselves, an author editing their post, a sign-out) are not
recorded. Reading the log: `AuditEventService.list_events` (the API) and `manage.py audit`.

What a row may hold: ids, the action, and the old and new values of the fields that changed.
Never a token, a key, a password or a security stamp: `record` leaves out any field named like
one (`SECRET_FIELDS`), whatever a caller passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.pagination import Page, PageParams, paginate
from app.logging import request_log_context
from app.models.audit_event import AuditEvent
from app.models.user import User
from app.schemas.audit_event import AuditEventListRequest

ActorKind = Literal["user", "superuser", "webhook", "sync", "cli"]
Changes = dict[str, list[Any]]

# Never recorded (a generated resource may have a field of such a name, too).
SECRET_FIELDS = frozenset(
    {"security_stamp", "password", "token", "access_token", "refresh_token", "secret", "api_key"}
)


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a signed-in account (`user` or `superuser`, through the API or the
    admin site), or the system (`webhook`, `sync`, `cli`), which has every right."""

    kind: ActorKind
    id: int | None = None

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls("superuser" if user.is_superuser else "user", user.id)

    @property
    def is_superuser(self) -> bool:
        return self.kind != "user"


WEBHOOK = Actor("webhook")
SYNC = Actor("sync")
CLI = Actor("cli")


def plain(value: Any) -> Any:
    """A value as JSON holds it."""
    return value.isoformat() if isinstance(value, datetime) else value


def diff(row: object, new_values: Mapping[str, Any]) -> Changes:
    """`{field: [old, new]}` for each of `new_values` that differs from what `row` holds."""
    changes: Changes = {}
    for field, new in new_values.items():
        old = getattr(row, field)
        if old != new:
            changes[field] = [plain(old), plain(new)]
    return changes


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: int,
    changes: Changes | None = None,
    *,
    owner_id: int | None = None,
) -> None:
    """Add the event to the session, to be written with the change by the caller's commit.
    `owner_id`: whose the target is (the user itself for an account); an owner's change to
    their own is not recorded."""
    if actor.id is not None and actor.id == owner_id:
        return
    kept = {
        field: change for field, change in (changes or {}).items() if field not in SECRET_FIELDS
    }
    context = request_log_context.get()
    session.add(
        AuditEvent(
            actor_id=actor.id,
            actor=actor.kind,
            action=action,
            target_type=target_type,
            target_id=target_id,
            changes=kept,
            request_id=context.request_id if context is not None else None,
        )
    )


def record_user_update(session: AsyncSession, actor: Actor, user: User, changes: Changes) -> None:
    """The events of one change to an account: `user.deactivate` / `user.reactivate` for
    `is_active`, `user.promote` / `user.demote` for `is_superuser`, `user.update` for the rest."""
    changes = dict(changes)
    verbs = {"is_active": ("reactivate", "deactivate"), "is_superuser": ("promote", "demote")}
    for field, (turned_on, turned_off) in verbs.items():
        change = changes.pop(field, None)
        if change is not None:
            verb = turned_on if change[1] else turned_off
            record(
                session, actor, f"user.{verb}", "user", user.id, {field: change}, owner_id=user.id
            )
    if changes:
        record(session, actor, "user.update", "user", user.id, changes, owner_id=user.id)


class AuditEventService:
    @staticmethod
    async def list_events(
        session: AsyncSession, page: PageParams, filters: AuditEventListRequest
    ) -> Page[AuditEvent]:
        statement = AuditEvent.listed(**filters.model_dump())
        return await paginate(session, statement, order=AuditEvent.list_order(), params=page)

    @staticmethod
    async def latest(
        session: AsyncSession, *, limit: int, user_id: int | None = None
    ) -> list[AuditEvent]:
        """The latest events; with `user_id`, those whose actor or target is that account."""
        statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if user_id is not None:
            statement = statement.where(
                or_(
                    AuditEvent.actor_id == user_id,
                    (AuditEvent.target_type == "user") & (AuditEvent.target_id == user_id),
                )
            )
        return list((await session.scalars(statement)).all())
