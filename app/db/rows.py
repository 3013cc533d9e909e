"""Rows read or written outside the ORM's execution where nothing is lost by it: the one place
every resource's by-id read, single-row insert and update, and read-session page go through
(the caller's read included). Why: SQLAlchemy's session and execution layer cost 2-3 × the
statement itself on asyncpg (docs/performance.md); here each runs on asyncpg's own connection,
compiled by SQLAlchemy once per shape.

- `read_by_id(session, Model, id)`: in a request's write session (`SessionDep`) it is
  `session.get` (the row joins the session's unit of work, to be changed or deleted). In a
  read session (`ReadSessionDep`) nothing will be changed, so the row is read outside the ORM:
  one SELECT, built once per model, and the object built from the row as the ORM's loader
  would, detached. On asyncpg (`Database.reads_on_driver`) that SELECT runs on asyncpg's own
  connection (still taken from the engine's pool), skipping SQLAlchemy's execution layer: the
  read costs about a quarter of the ORM's (docs/performance.md).
- `read_detached(database, Model, id)`: the same read where there is no session (the caller's
  read, `app/authentication.py`).
- `select_detached(session, Model, template)`: the rows of a read session's SELECT of one
  model (a page of a list, `app/db/pagination.py`), the objects built detached, with the
  values of the columns it adds. The statement is a `Template`: built only the first time,
  after that only its values change. On asyncpg it is compiled by SQLAlchemy once per shape
  (its cache key) and runs on asyncpg's own connection: SQLAlchemy's ORM execution of a page
  of 20 cost about 3 × the driver's fetch (docs/performance.md).
- `autocommit(session)`: said by a use case that is one statement, before that statement: it
  runs outside a transaction, one round trip (not BEGIN, statement, COMMIT). A use case of
  several statements does not say it, and keeps them in one transaction.
- `insert_row(session, Model, values)`, `update_row(session, Model, id, values)`: one
  `INSERT … RETURNING` / `UPDATE … RETURNING` through the session, the model's Python-side
  defaults included (`created_at`, `updated_at`…); the object is built from the returned row,
  detached. After `autocommit` on asyncpg (`Database.reads_on_driver`), the statement
  (compiled by SQLAlchemy once per model and set of columns) runs with asyncpg's `fetchrow` on
  a pooled connection outside a transaction, as the reads do: SQLAlchemy's session and
  execution layer cost 2-3 × the statement (docs/performance.md). A unique or foreign-key
  violation is raised as SQLAlchemy's `IntegrityError`, as everywhere else; any other failure
  discards the connection. In a transaction, SQLAlchemy runs the statement.

Objects read or written here are detached: read their attributes freely (they are all loaded);
to change one through the unit of work, `session.add(obj)` first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import (
    BindParameter,
    Column,
    Engine,
    Select,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import class_mapper
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.util import await_only, greenlet_spawn

from app.db.database import Database, ReadOnlySession

logger = logging.getLogger("app.db")

ModelT = TypeVar("ModelT")
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Shape:
    """What reading and building one model's rows needs, made once per model."""

    table: Table
    primary_key: str
    select_by_id: Select[Any]
    attribute_names: tuple[str, ...]
    columns: Mapping[str, Column[Any]]  # by attribute name
    new_instance: Callable[[], Any]  # the mapper's: an object with its state, no __init__
    identity_class: type[Any]  # the first part of the ORM's identity key of a row
    key_index: int  # where the primary key is in a row

    def columns_of(self, values: Mapping[str, Any]) -> dict[Column[Any], Any]:
        return {self.columns[name]: value for name, value in values.items()}

    def build(self, model: type[ModelT], row: Sequence[Any]) -> ModelT:
        """The object the ORM's loader would build from `row` (every column), detached: its
        values set, and the identity key that `session.add` needs to take it as persistent.
        What the loader does besides (history, expiry) is for objects with a past; these have
        none. `make_transient_to_detached` would also do it, at 5 × the cost (14 against
        2.4 µs an object here, 21 objects a page: docs/performance.md)."""
        obj: ModelT = self.new_instance()
        obj.__dict__.update(zip(self.attribute_names, row, strict=True))
        instance_state(obj).key = (self.identity_class, (row[self.key_index],), None)
        return obj


_SHAPES: dict[type[Any], _Shape] = {}
_DRIVER_READS: dict[tuple[type[Any], str], _DriverRead] = {}


def _shape(model: type[Any]) -> _Shape:
    shape = _SHAPES.get(model)
    if shape is None:
        shape = _SHAPES[model] = _make_shape(model)
    return shape


def _make_shape(model: type[Any]) -> _Shape:
    mapper = class_mapper(model)
    table = mapper.local_table
    assert isinstance(table, Table) and len(mapper.primary_key) == 1, model
    key = mapper.primary_key[0]
    return _Shape(
        table=table,
        primary_key=mapper.get_property_by_column(key).key,
        select_by_id=select(table).where(key == bindparam("id")),
        attribute_names=tuple(mapper.get_property_by_column(c).key for c in table.c),
        columns={mapper.get_property_by_column(c).key: c for c in table.c},
        new_instance=mapper.class_manager.new_instance,
        identity_class=mapper._identity_class,
        key_index=next(i for i, column in enumerate(table.c) if column is key),
    )


@dataclass(frozen=True)
class _DriverRead:
    """The by-id SELECT as the driver is sent it (`... WHERE users.id = $1::INTEGER`), and each
    column's result processor for this dialect and the type the driver reports for it (what
    SQLAlchemy applies to a row: a custom type's `process_result_value`, a Numeric as float)."""

    sql: str
    processors: tuple[Processor, ...]

    def process(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for value, process in zip(row, self.processors, strict=True)
        )


def _driver_read(model: type[Any], dialect: Dialect, driver_connection: Any) -> _DriverRead:
    made = _DRIVER_READS.get((model, dialect.driver))
    if made is None:
        shape = _shape(model)
        sql = str(shape.select_by_id.compile(dialect=dialect))
        # Prepared once to learn each column's type as the driver reports it, as SQLAlchemy's
        # own asyncpg cursor does for its result's description.
        prepared = await_only(driver_connection.prepare(sql))
        processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, attribute.type.oid)
            for column, attribute in zip(shape.table.c, prepared.get_attributes(), strict=True)
        )
        made = _DRIVER_READS[model, dialect.driver] = _DriverRead(sql, processors)
    return made


class BrokenConnection(Exception):
    """A read on the driver failed on a connection taken from the pool, now discarded."""


async def read_detached(database: Database, model: type[ModelT], id: int) -> ModelT | None:
    """The row of `model` with primary key `id`, read outside any session, or None.

    On the driver: if the statement fails on a pooled connection (killed by a restart, a
    failover, an idle timeout), that connection is discarded and the read is done once more the
    ordinary way, which reports a failure as any other query does (and replaces the pool's
    other stale connections at once). A failed checkout or a timeout is not retried: the
    ordinary way would only fail, or wait, the same again."""
    sync_engine = database.autocommit_engine.sync_engine
    row: Sequence[Any] | None = None
    read_again = True
    # Checkout, query and checkin in one hop to the sync engine, not one each.
    if database.reads_on_driver:
        try:
            row = await greenlet_spawn(_row_on_driver, sync_engine, model, id)
            read_again = False
        except BrokenConnection as exc:
            _warn_read_again(f"a {model.__name__} by id", exc)
    if read_again:
        row = await greenlet_spawn(_row_on_engine, sync_engine, model, id)
    return None if row is None else _shape(model).build(model, row)


async def read_by_id(session: AsyncSession, model: type[ModelT], id: int) -> ModelT | None:
    """The row of `model` with primary key `id`, or None: in a read session, read outside the
    ORM and detached (`read_detached`); in any other session, `session.get`."""
    database = Database.of(session)
    if database is None or not reads_detached(session):
        return await session.get(model, id)
    return await read_detached(database, model, id)


def reads_detached(session: AsyncSession) -> bool:
    """Whether `session` is a request's read session: what it reads, nothing will change, so
    rows may be read outside the ORM and the objects built detached."""
    return Database.of(session) is not None and isinstance(session.sync_session, ReadOnlySession)


def _warn_read_again(what: str, failure: BrokenConnection) -> None:
    cause = failure.__cause__
    logger.warning(
        "Reading %s failed on a pooled connection (%s: %s); reading again",
        what,
        type(cause).__name__,
        str(cause).partition("\n")[0][:200],
    )


@dataclass(frozen=True)
class Template:
    """A statement whose SQL is the same at every call with this `key`, built by `build` only
    the first time (`select_detached`): after that only its `values` change. Why: building a
    page's statement and its cache key cost more than running it on the driver
    (docs/performance.md).

    `build()` gives the statement, the columns `added` after the model's, and the bound
    parameters whose values `values` are, in that order: every one in the statement (its
    filters' too). A statement with a parameter not among them, or a template whose key is
    None, is built every time."""

    key: Hashable | None
    values: Sequence[Any]
    build: Callable[[], tuple[Select[Any], Sequence[Any], Sequence[BindParameter[Any]]]]


async def select_detached(
    session: AsyncSession, model: type[ModelT], template: Template
) -> list[tuple[ModelT, Sequence[Any]]]:
    """Each row of the template's statement (a SELECT of one `model`, filtered and ordered as
    the caller likes) with the columns it adds after the model's: the `model` object,
    detached, and the values of the added columns. For read sessions only (`reads_detached`)."""
    shape = _shape(model)
    width = len(shape.attribute_names)
    database = Database.of(session)
    rows: Sequence[Sequence[Any]] | None = None
    if database is not None and database.reads_on_driver:
        sync_engine = database.autocommit_engine.sync_engine
        try:
            rows = await greenlet_spawn(_select_on_driver, sync_engine, model, template)
        except BrokenConnection as exc:
            _warn_read_again(f"{model.__name__} rows", exc)
    if rows is None:
        statement, added, _ = template.build()
        rows = (await session.execute(_selecting(statement, shape, added))).all()
    return [(shape.build(model, row[:width]), row[width:]) for row in rows]


def _selecting(statement: Select[Any], shape: _Shape, added: Sequence[Any]) -> Select[Any]:
    return statement.with_only_columns(*shape.table.c, *added, maintain_column_froms=True)


class _Marker:
    """Stands for the value of the cache key's parameter `index` (see `_driver_select`)."""

    def __init__(self, index: int) -> None:
        self.index = index


@dataclass(frozen=True)
class _DriverSelect:
    """A SELECT as the driver is sent it: for each `$n`, the index of its value among the
    cache key's parameters (or its constant) and its bind processor; its columns' result
    processors (as `_DriverRead`)."""

    sql: str
    positions: tuple[int | None, ...]  # None: a constant of the SQL's own
    constants: tuple[Any, ...]
    bind_processors: tuple[Processor, ...]
    result: _DriverRead

    def parameters(self, values: Sequence[Any]) -> list[Any]:
        """The driver's `$n` values from `values`, those of the cache key's parameters."""
        parameters = []
        for position, constant, process in zip(
            self.positions, self.constants, self.bind_processors, strict=True
        ):
            value = constant if position is None else values[position]
            # Through its bind processor, as SQLAlchemy's execution sends it.
            parameters.append(value if process is None else process(value))
        return parameters


_DRIVER_SELECTS: dict[tuple[str, Any], _DriverSelect | None] = {}
_MAX_DRIVER_SELECTS = 500  # statement shapes, not statements: a few per list
# A template's statement, by template key: its cache key's, and for each of that key's
# parameters, which of the template's values it is (None: built every time).
_TEMPLATES: dict[tuple[str, Hashable], tuple[Any, tuple[int, ...]] | None] = {}


def _driver_select(
    statement: Select[Any], cache_key: Any, dialect: Dialect, driver_connection: Any
) -> _DriverSelect | None:
    """The statement compiled once per shape (SQLAlchemy's cache key), as SQLAlchemy's own
    execution compiles it; None for a statement whose SQL depends on its values (an expanding
    IN, a literal-rendered parameter), which SQLAlchemy's execution then runs."""
    key = (dialect.driver, cache_key.key)
    if key in _DRIVER_SELECTS:
        return _DRIVER_SELECTS[key]
    compiled: Any = statement.compile(dialect=dialect, cache_key=cache_key)
    made: _DriverSelect | None = None
    varies = compiled.literal_execute_params or compiled.post_compile_params
    if compiled.positional and not varies:
        sql = str(compiled)
        names = tuple(compiled.positiontup or ())
        # Which cache key parameter each `$n` is, as SQLAlchemy's execution resolves it.
        markers: list[BindParameter[Any]] = [
            bindparam(None, _Marker(i)) for i in range(len(cache_key.bindparams))
        ]
        resolved = compiled.construct_params(extracted_parameters=markers, escape_names=False)
        values = [resolved[name] for name in names]
        prepared = _on_driver(driver_connection.prepare(sql))
        processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, attribute.type.oid)
            for column, attribute in zip(
                statement.selected_columns, prepared.get_attributes(), strict=True
            )
        )
        made = _DriverSelect(
            sql,
            tuple(value.index if isinstance(value, _Marker) else None for value in values),
            tuple(None if isinstance(value, _Marker) else value for value in values),
            tuple(compiled._bind_processors.get(name) for name in names),
            _DriverRead(sql, processors),
        )
    if len(_DRIVER_SELECTS) >= _MAX_DRIVER_SELECTS:
        _DRIVER_SELECTS.clear()
        _TEMPLATES.clear()
    _DRIVER_SELECTS[key] = made
    return made


def _on_driver(awaitable: Any) -> Any:
    """`awaitable` (a call on asyncpg's connection) awaited; a failure but a timeout or a
    cancellation is raised as `BrokenConnection` (the caller discards the connection)."""
    try:
        return await_only(awaitable)
    except Exception as exc:
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            raise
        raise BrokenConnection() from exc


def _select_on_driver(
    engine: Engine, model: type[Any], template: Template
) -> Sequence[Sequence[Any]] | None:
    """The rows, or None when this statement takes SQLAlchemy's execution."""
    driver = engine.dialect.driver
    remembered = _TEMPLATES.get((driver, template.key)) if template.key is not None else None
    if remembered is not None:  # built before: only its values change
        cache_key_key, order = remembered
        select = _DRIVER_SELECTS.get((driver, cache_key_key))
        if select is not None:
            return _fetch_on_driver(engine, select, [template.values[i] for i in order])
    statement, added, parameters = template.build()
    selected = _selecting(statement, _shape(model), added)
    cache_key = selected._generate_cache_key()
    if cache_key is None:
        return None
    if template.key is not None:
        _remember(driver, template.key, cache_key, parameters)
    values = [parameter.effective_value for parameter in cache_key.bindparams]
    return _fetch_on_driver(engine, (selected, cache_key), values)


def _fetch_on_driver(
    engine: Engine, select: _DriverSelect | tuple[Select[Any], Any], values: Sequence[Any]
) -> Sequence[Sequence[Any]] | None:
    """The rows of `select` (or of a statement and its cache key, compiled here once) with
    `values`, its cache key's parameters; None when it takes SQLAlchemy's execution."""
    connection = engine.pool.connect()  # a failed checkout is raised as the engine would
    try:
        driver_connection: Any = connection.driver_connection
        if not isinstance(select, _DriverSelect):
            statement, cache_key = select
            compiled = _driver_select(statement, cache_key, engine.dialect, driver_connection)
            if compiled is None:
                return None
            select = compiled
        records = _on_driver(driver_connection.fetch(select.sql, *select.parameters(values)))
    except BaseException as exc:
        if not isinstance(exc, Exception) or isinstance(
            exc, (BrokenConnection, TimeoutError, asyncio.TimeoutError)
        ):
            connection.invalidate()  # its state is unknown (see _row_on_driver)
        raise
    finally:
        connection.close()
    return [select.result.process(record) for record in records]


def _remember(
    driver: str, key: Hashable, cache_key: Any, parameters: Sequence[BindParameter[Any]]
) -> None:
    """Which of a template's values each parameter of its statement's cache key is; a template
    whose statement has a parameter it did not name is not remembered (built every time)."""
    if len(_TEMPLATES) >= _MAX_DRIVER_SELECTS:
        _TEMPLATES.clear()
    index = {id(parameter): i for i, parameter in enumerate(parameters)}
    order = [index.get(id(parameter)) for parameter in cache_key.bindparams]
    known = None if None in order else (cache_key.key, tuple(i for i in order if i is not None))
    _TEMPLATES[driver, key] = known


def _row_on_engine(engine: Engine, model: type[Any], id: int) -> Sequence[Any] | None:
    with engine.connect() as connection:
        return connection.execute(_shape(model).select_by_id, {"id": id}).first()


def _row_on_driver(engine: Engine, model: type[Any], id: int) -> Sequence[Any] | None:
    # A failed checkout (the database down) is raised as is: the engine would fail the same way.
    connection = engine.pool.connect()
    try:
        driver_connection: Any = connection.driver_connection
        read = _driver_read(model, engine.dialect, driver_connection)
        row = await_only(driver_connection.fetchrow(read.sql, id))
    except BaseException as exc:
        # As SQLAlchemy does with a connection whose statement failed or was cancelled: its
        # state is unknown, so it is closed rather than handed to the next request.
        connection.invalidate()
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or not isinstance(exc, Exception):
            raise  # a slow database (waiting twice won't help), a cancelled request
        raise BrokenConnection() from exc
    finally:
        connection.close()
    return None if row is None else read.process(row)


async def autocommit(session: AsyncSession) -> None:
    """This session's use case is one statement: run it outside a transaction, one round trip
    instead of three (BEGIN, the statement, COMMIT). Say it before that statement; the service
    still commits, which then sends nothing. Where autocommit is not allowed (asyncpg behind a
    transaction pooler, `Database.allows_autocommit`), or outside a request's session, the
    statement runs in a transaction as usual.

    On asyncpg (`Database.reads_on_driver`) nothing is sent yet: the next `insert_row` or
    `update_row` takes a pooled connection of its own for its statement, as `read_detached`
    does, and the session stays unconnected (its commit and close then cost nothing:
    `app/db/database.py` `RequestSession`)."""
    database = Database.of(session)
    if database is None or not database.allows_autocommit or session.in_transaction():
        return
    if database.reads_on_driver:
        session.info[_ONE_STATEMENT] = True
    else:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


_ONE_STATEMENT = "megapolis.one_statement"  # in `session.info`: said by `autocommit`


@dataclass(frozen=True)
class _DriverWrite:
    """An `INSERT/UPDATE … RETURNING` as the driver is sent it, with the names of its bind
    parameters in the driver's `$n` order and each one's bind processor."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor, ...]

    def parameters(self, values: Mapping[str, Any]) -> list[Any]:
        return [
            values[name] if process is None else process(values[name])
            for name, process in zip(self.names, self.processors, strict=True)
        ]


_DRIVER_WRITES: dict[tuple[type[Any], str, str, frozenset[str]], _DriverWrite] = {}
_ID = "row_id"  # the bind parameter of an UPDATE's primary key (the values' are "v_<name>")


def _driver_write(
    model: type[Any], kind: str, keys: frozenset[str], dialect: Dialect
) -> _DriverWrite:
    cache_key = (model, kind, dialect.driver, keys)
    made = _DRIVER_WRITES.get(cache_key)
    if made is None:
        shape = _shape(model)
        # Bind parameters named apart from the columns (SQLAlchemy keeps those names for itself).
        values: dict[Any, Any] = {shape.columns[k]: bindparam(f"v_{k}") for k in sorted(keys)}
        statement: Any
        if kind == "insert":
            statement = insert(shape.table)
        else:
            key_column = shape.columns[shape.primary_key]
            statement = update(shape.table).where(key_column == bindparam(_ID))
        compiled = statement.values(values).returning(*shape.table.c).compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        processors = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        made = _DRIVER_WRITES[cache_key] = _DriverWrite(str(compiled), names, processors)
    return made


def _with_defaults(shape: _Shape, values: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """`values` and, for each column not in them, its Python-side default (INSERT) or
    `onupdate` (UPDATE), as SQLAlchemy's execution would add them; None when one of those is
    not a plain value or function (a SQL expression, a sequence): that statement takes
    SQLAlchemy's own execution."""
    complete = dict(values)
    for name, column in shape.columns.items():
        default = column.default if kind == "insert" else column.onupdate
        if name in complete or default is None:
            continue
        if default.is_scalar:
            complete[name] = default.arg  # type: ignore[attr-defined]
        elif default.is_callable:
            # SQLAlchemy wraps a function of no argument as one of the execution context.
            complete[name] = default.arg(None)  # type: ignore[attr-defined]
        else:
            return None
    return complete


async def _write_on_driver(
    session: AsyncSession,
    model: type[ModelT],
    kind: str,
    values: Mapping[str, Any],
    id: int | None = None,
) -> ModelT | None | bool:
    """The statement of a one-statement use case (`autocommit` said it) on asyncpg: run with
    asyncpg's `fetchrow` on a pooled connection outside a transaction, in one hop to the sync
    engine (checkout, statement, checkin), as `read_detached` reads. SQLAlchemy's session and
    execution layer cost 2-3 × the statement (docs/performance.md). False when this statement
    takes SQLAlchemy's execution instead (in a transaction, or a default that is SQL)."""
    database = Database.of(session)
    if database is None or not session.info.pop(_ONE_STATEMENT, False):
        return False
    shape = _shape(model)
    complete = _with_defaults(shape, values, kind)
    if complete is None or session.in_transaction():
        if not session.in_transaction():  # still one statement, through SQLAlchemy
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return False
    sync_engine = database.autocommit_engine.sync_engine
    row = await greenlet_spawn(_write_on_pooled_connection, sync_engine, model, kind, complete, id)
    return None if row is None else shape.build(model, row)


def _write_on_pooled_connection(
    engine: Engine, model: type[Any], kind: str, values: Mapping[str, Any], id: int | None
) -> Sequence[Any] | None:
    write = _driver_write(model, kind, frozenset(values), engine.dialect)
    parameters = write.parameters(
        {**{f"v_{name}": value for name, value in values.items()}, _ID: id}
    )
    connection = engine.pool.connect()  # a failed checkout is raised as the engine would
    try:
        driver_connection: Any = connection.driver_connection
        try:
            row = await_only(driver_connection.fetchrow(write.sql, *parameters))
        except asyncpg.IntegrityConstraintViolationError as exc:
            # As SQLAlchemy reports it: the services and the handlers expect this one. Outside a
            # transaction the connection is left as it was.
            raise IntegrityError(write.sql, parameters, exc) from None
        except BaseException:
            # The connection's state is unknown: closed rather than handed to the next request.
            connection.invalidate()
            raise
        if row is None:
            return None
        return _driver_read(model, engine.dialect, driver_connection).process(row)
    finally:
        connection.close()


async def insert_row(
    session: AsyncSession, model: type[ModelT], values: Mapping[str, Any]
) -> ModelT:
    """`INSERT … RETURNING` one row of `model` through the session; the new object, detached."""
    written = await _write_on_driver(session, model, "insert", values)
    if written is not False:
        assert written is not None  # an INSERT … RETURNING returns its row
        return written  # type: ignore[return-value]
    shape = _shape(model)
    statement = insert(shape.table).values(shape.columns_of(values)).returning(*shape.table.c)
    row = (await session.execute(statement)).one()
    return shape.build(model, row)


async def update_row(
    session: AsyncSession, model: type[ModelT], id: int, values: Mapping[str, Any]
) -> ModelT | None:
    """`UPDATE … RETURNING` the row of `model` with primary key `id` through the session (its
    `onupdate` columns too); the changed object, detached, or None when there is no such row."""
    written = await _write_on_driver(session, model, "update", values, id)
    if written is not False:
        return written  # type: ignore[return-value]
    shape = _shape(model)
    statement = (
        update(shape.table)
        .where(shape.columns[shape.primary_key] == id)
        .values(shape.columns_of(values))
        .returning(*shape.table.c)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else shape.build(model, row)
