from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Boolean, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, CRUDMixin, TimestampMixin

EMAIL_MAX_LENGTH = 320


def normalize_email(email: str) -> str:
    return email.strip().lower()


class User(CRUDMixin, TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-case, so the unique constraint is also case-insensitive.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    supabase_id: Mapped[str | None] = mapped_column(String(36), unique=True, default=None)
    full_name: Mapped[str | None] = mapped_column(String(255), default=None)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        return f"<User id={self.id!r}>"

    @classmethod
    async def get_by_email(cls, session: AsyncSession, email: str) -> User | None:
        result = await session.execute(select(cls).where(cls.email == normalize_email(email)))
        return result.scalar_one_or_none()

    @classmethod
    async def get_by_supabase_id(cls, session: AsyncSession, supabase_id: str) -> User | None:
        result = await session.execute(select(cls).where(cls.supabase_id == supabase_id))
        return result.scalar_one_or_none()

    @classmethod
    async def list_page(
        cls, session: AsyncSession, *, limit: int, offset: int
    ) -> tuple[Sequence[User], int]:
        """One page ordered by id, and the total count."""
        total = await session.scalar(select(func.count()).select_from(cls))
        rows = await session.scalars(select(cls).order_by(cls.id).limit(limit).offset(offset))
        return rows.all(), int(total or 0)
