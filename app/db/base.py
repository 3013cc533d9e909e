"""Declarative base, shared column types and the CRUD mixin every model can use.

Nothing here knows about requests: models and their helpers are usable from routes, the CLI,
migrations and scripts alike.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given for a UTCDateTime column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)


ModelT = TypeVar("ModelT", bound="CRUDMixin")


class CRUDMixin:
    """Active-record helpers. They take the session explicitly, flush, and never commit: the
    service that calls them owns the transaction."""

    @classmethod
    async def get_by_id(cls: type[ModelT], session: AsyncSession, id: int) -> ModelT | None:
        return await session.get(cls, id)

    @classmethod
    async def create(cls: type[ModelT], session: AsyncSession, **values: Any) -> ModelT:
        obj = cls(**values)
        session.add(obj)
        await session.flush()
        return obj

    async def update(self, session: AsyncSession, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        await session.flush()

    async def delete(self, session: AsyncSession) -> None:
        await session.delete(self)
        await session.flush()
