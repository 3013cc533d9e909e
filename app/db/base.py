"""Declarative base, shared column types and the CRUD mixin every model can use."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import DateTime, Engine, MetaData, Row, Select, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    class_mapper,
    make_transient_to_detached,
    mapped_column,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import greenlet_spawn

from app.db.session import allows_autocommit

# Integer primary keys are 32-bit on PostgreSQL: larger ids cannot exist, so never query them.
MAX_INT_ID = 2**31 - 1

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

_autocommit_engines: WeakKeyDictionary[Engine, AsyncEngine] = WeakKeyDictionary()


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, with statements that run outside a transaction."""
    try:
        return _autocommit_engines[engine.sync_engine]
    except KeyError:
        derived = engine
        if allows_autocommit(engine):  # not asyncpg behind a transaction pooler
            derived = engine.execution_options(isolation_level="AUTOCOMMIT")
        _autocommit_engines[engine.sync_engine] = derived
        return derived


def _first_row(engine: Engine, statement: Select[Any], params: dict[str, Any]) -> Row[Any] | None:
    with engine.connect() as connection:
        return connection.execute(statement, params).first()


_selects_by_id: dict[type[Any], tuple[Select[Any], tuple[str, ...]]] = {}


def _select_by_id(cls: type[Any]) -> tuple[Select[Any], tuple[str, ...]]:
    """`SELECT <columns> WHERE <primary key> = :id` for a model, built once, and the attribute
    name of each selected column."""
    if cls not in _selects_by_id:
        mapper = class_mapper(cls)
        table = mapper.local_table
        statement = select(table).where(mapper.primary_key[0] == bindparam("id"))
        names = tuple(mapper.get_property_by_column(column).key for column in table.c)
        _selects_by_id[cls] = (statement, names)
    return _selects_by_id[cls]


class CRUDMixin:
    """Active-record helpers. They take the session explicitly, flush, and never commit:
    the service that calls them owns the transaction."""

    @classmethod
    async def get_by_id(cls: type[ModelT], session: AsyncSession, id: int) -> ModelT | None:
        """The row with this primary key, as an object of the session.

        While the session has no transaction open (the usual case at the start of a request),
        the row is read with one autocommitted SELECT instead of BEGIN + SELECT + ROLLBACK and
        attached to the session without another query. Under READ COMMITTED that sees exactly
        what a read inside a transaction would.
        """
        key = class_mapper(cls).identity_key_from_primary_key((id,))
        if (
            session.in_transaction()
            or key in session.identity_map
            or not isinstance(session.bind, AsyncEngine)
        ):
            return await session.get(cls, id)
        obj = await cls.read_detached(session.bind, id)
        if obj is not None:
            session.add(obj)
        return obj

    @classmethod
    async def read_detached(cls: type[ModelT], engine: AsyncEngine, id: int) -> ModelT | None:
        """The row with this primary key, read with one autocommitted SELECT and no session.
        The object is detached: `session.add()` it to change or delete it."""
        statement, attribute_names = _select_by_id(cls)
        # Checkout, query and checkin in one hop to the sync engine, not one each.
        sync_engine = autocommit_engine(engine).sync_engine
        row = await greenlet_spawn(_first_row, sync_engine, statement, {"id": id})
        if row is None:
            return None
        # As the ORM's own loader does: a bare instance, its attributes set as loaded values.
        obj: ModelT = class_mapper(cls).class_manager.new_instance()
        obj.__dict__.update(zip(attribute_names, row, strict=True))
        make_transient_to_detached(obj)
        return obj

    @classmethod
    async def create(cls: type[ModelT], session: AsyncSession, **values: Any) -> ModelT:
        obj = cls(**values)
        session.add(obj)
        await session.flush()
        return obj

    async def update(self, session: AsyncSession, **values: Any) -> None:
        session.add(self)
        for name, value in values.items():
            setattr(self, name, value)
        await session.flush()

    async def delete(self, session: AsyncSession) -> None:
        session.add(self)
        await session.delete(self)
        await session.flush()
