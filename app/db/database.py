"""`Database`: one app instance's engine and session factory, and the facts about that engine.

Two ways to get a session, one for each place:
- in a route or dependency: `session: SessionDep` (`app/dependencies.py`): one session per
  request, closed after the response;
- anywhere else (CLI, scripts, background jobs): `async with open_session() as session: ...`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db.engine import create_engine


class ReadOnlySession(Session):
    """A session that refuses to write: for reads outside a transaction (see `Database`)."""


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_writes(_session: Session, _flush_context: Any, _instances: Any) -> None:
    raise RuntimeError("this session only reads: change data through SessionDep / a service")


class RequestSession(AsyncSession):
    """The app's sessions. Why a subclass: in a session that never took a connection and
    holds no object, `commit` and `close` have nothing to send or release, yet SQLAlchemy's
    async bridge still spends a greenlet hop and its transaction bookkeeping on each (about
    60 µs a request, docs/performance.md). Such sessions are common here: a one-statement use
    case runs its statement on a pooled connection of its own (`app/db/rows.py` `autocommit`),
    and the caller's read and by-id reads do too. Anything else behaves as `AsyncSession`."""

    def _untouched(self) -> bool:
        sync = self.sync_session
        return not sync.in_transaction() and not sync.identity_map and not sync.new

    async def commit(self) -> None:
        if not self._untouched():
            await super().commit()

    async def close(self) -> None:
        if not self._untouched():
            await super().close()


def create_sessionmaker(
    engine: AsyncEngine,
    sync_session_class: type[Session] = Session,
    info: dict[str, Any] | None = None,
) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after a commit, without implicit async I/O.
    return async_sessionmaker(
        engine,
        class_=RequestSession,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=sync_session_class,
        info=info,
    )


_DATABASE = "megapolis.database"  # the key of a request session's `Database` in `session.info`


class Database:
    """Made in the app's lifespan (`app.state.database`) and disposed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        # Each session knows the facts below about its database (`Database.of`).
        self.sessionmaker = create_sessionmaker(self.engine, info={_DATABASE: self})
        self.uses_transaction_pooler = settings.uses_transaction_pooler
        # asyncpg prepares a statement (Parse, Sync) and then runs it (Bind, Execute, Sync):
        # outside a transaction a transaction pooler may send the second half to another server
        # connection ("prepared statement ... does not exist"). Inside one, it keeps the same
        # server connection until COMMIT/ROLLBACK. So there, every statement needs a transaction.
        self.allows_autocommit = not (
            self.uses_transaction_pooler and self.engine.dialect.driver == "asyncpg"
        )
        self.autocommit_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.allows_autocommit
            else self.engine
        )
        """The same engine and pool, with each statement outside a transaction: a read is one
        round trip instead of BEGIN + SELECT + ROLLBACK."""
        self.reads_on_driver = (
            self.allows_autocommit
            and self.engine.dialect.driver == "asyncpg"
            # Traced, every query goes through the engine, whose instrumentation makes its span.
            and not settings.OTEL_EXPORTER_OTLP_ENDPOINT
        )
        """Whether a read by id may run on asyncpg's connection itself, outside SQLAlchemy's
        execution layer (`app/db/rows.py`: the caller's read, and by-id reads in read
        sessions)."""
        self.read_sessionmaker = create_sessionmaker(
            self.autocommit_engine, ReadOnlySession, info={_DATABASE: self}
        )
        """Sessions for routes that only read. Each query sees what is committed when it runs
        (READ COMMITTED, as inside a transaction), but two queries are not one snapshot (a page
        and its total are one query: `app/db/pagination.py`)."""

    @staticmethod
    def of(session: AsyncSession) -> Database | None:
        """The `Database` whose sessionmaker made `session` (None for `open_session`'s)."""
        database: Database | None = session.info.get(_DATABASE)
        return database

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def open_session(settings: Settings | None = None) -> AsyncIterator[AsyncSession]:
    """A session outside a request (CLI, scripts): its own short-lived engine."""
    engine = create_engine(settings or get_settings(), pooled=False)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()
