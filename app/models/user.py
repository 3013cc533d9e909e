from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Boolean, Select, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, CRUDMixin, TimestampMixin, UTCDateTime
from app.db.pagination import Order
from app.fields import EMAIL_MAX_LENGTH, FULL_NAME_MAX_LENGTH, canonical_email

SECURITY_STAMP_LENGTH = 32


def new_security_stamp() -> str:
    return secrets.token_urlsafe(16)  # 22 characters, 128 random bits


class User(CRUDMixin, TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-case, so the unique constraint is also case-insensitive.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    supabase_id: Mapped[str | None] = mapped_column(String(36), unique=True, default=None)
    full_name: Mapped[str | None] = mapped_column(String(FULL_NAME_MAX_LENGTH), default=None)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    # Every API token carries the stamp current when it was issued, and is accepted only while
    # it is still the account's stamp: a new one revokes them all. Random, so a token can never
    # match another account that later gets the same id.
    security_stamp: Mapped[str] = mapped_column(
        String(SECURITY_STAMP_LENGTH), default=new_security_stamp
    )
    # The end (`banned_until`) of the last Supabase ban whose token revocation was applied, by
    # the webhook or by `manage.py sync-supabase`: the same ban never revokes twice, so tokens
    # issued after it (once it ended, or by local verification) are not revoked again by a
    # replayed webhook call or by every later sync.
    supabase_banned_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    def __repr__(self) -> str:
        return f"<User id={self.id!r}>"

    @property
    def owner_id(self) -> int:
        """Who may change this record (with superusers): the user itself. See
        `app/dependencies.py`."""
        return self.id

    def revoke_tokens(self) -> None:
        """Revoke every API token issued so far (flushed with the next flush)."""
        self.security_stamp = new_security_stamp()

    @classmethod
    async def get_by_email(cls, session: AsyncSession, email: str) -> User | None:
        try:
            canonical = canonical_email(email)
        except ValueError:
            return None  # not an address: nobody has it
        result = await session.execute(select(cls).where(cls.email == canonical))
        return result.scalar_one_or_none()

    @classmethod
    async def get_by_supabase_id(cls, session: AsyncSession, supabase_id: str) -> User | None:
        result = await session.execute(select(cls).where(cls.supabase_id == supabase_id))
        return result.scalar_one_or_none()

    @classmethod
    def listed(cls) -> Select[tuple[User]]:
        """The users a list shows: all (`paginate` orders and pages them)."""
        return select(cls)

    @classmethod
    def list_order(cls) -> Order:
        """The order of the users list: by id, oldest first (the primary key's index)."""
        return (cls.id.asc(),)
