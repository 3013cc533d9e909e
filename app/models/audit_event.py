"""The audit log: one row per change to an account or a post made by someone other than its
owner (a superuser, the Supabase webhook, `sync-supabase`, the CLI). Rows are written by
`app/services/audit_event.py`, in the transaction of the change they record, and never changed.

`actor_id` and `target_id` are plain integers, not foreign keys: the trace must outlive the
accounts and posts it names (deleting a user keeps the rows about them, and those by them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, Select, String, select
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, CRUDMixin, UTCDateTime, utc_now
from app.db.pagination import Order

ACTORS = ("user", "superuser", "webhook", "sync", "cli")


class AuditEvent(CRUDMixin, Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    # The account that made the change; null for the system (webhook, sync, CLI).
    actor_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # One of ACTORS.
    actor: Mapped[str] = mapped_column(String(16))
    # `user.update`, `post.delete`, ...: `<target_type>.<verb>`.
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[int] = mapped_column(Integer)
    # {field: [old, new]}; never a token, a key or a security stamp.
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The X-Request-ID of the request that made the change; null outside a request.
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)

    def __repr__(self) -> str:
        return f"<AuditEvent id={self.id!r} action={self.action!r}>"

    @classmethod
    def listed(
        cls,
        *,
        target_type: str | None = None,
        target_id: int | None = None,
        actor_id: int | None = None,
        action: str | None = None,
    ) -> Select[tuple[AuditEvent]]:
        """The events matching every filter given (`paginate` orders and pages them)."""
        statement = select(cls)
        if target_type is not None:
            statement = statement.where(cls.target_type == target_type)
        if target_id is not None:
            statement = statement.where(cls.target_id == target_id)
        if actor_id is not None:
            statement = statement.where(cls.actor_id == actor_id)
        if action is not None:
            statement = statement.where(cls.action == action)
        return statement

    @classmethod
    def list_order(cls) -> Order:
        """Newest first: ids grow with time, and the id is the key."""
        return (cls.id.desc(),)


# One index per filter of the list, each ending in `id`, so a filtered page (by cursor too) is one
# range of an index, read in order.
Index("ix_audit_events_target", AuditEvent.target_type, AuditEvent.target_id, AuditEvent.id)
Index("ix_audit_events_actor_id", AuditEvent.actor_id, AuditEvent.id)
Index("ix_audit_events_action", AuditEvent.action, AuditEvent.id)
