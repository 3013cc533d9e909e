"""Pages of a list: by keyset (`cursor`) or by `offset`, with a bounded `total`.

Every list of the API pages through `paginate`; a route takes `PageParamsDep`
(`app/dependencies.py`) and hands the `PageParams` to its service:

    async def list_posts(session, page: PageParams, *, author_id=None) -> Page[Post]:
        statement = select(Post)  # the filters as WHERE clauses; no ORDER BY, no LIMIT
        if author_id is not None:
            statement = statement.where(Post.author_id == author_id)
        return await paginate(session, statement, order=Post.newest_first(), params=page)

Why keyset: a page reached by cursor is `WHERE (created_at, id) < (:last_created_at, :last_id)
ORDER BY created_at DESC, id DESC LIMIT n`, one index range scan however deep it is, and a walk
that follows `next_cursor` sees every row that existed when it began exactly once, whatever is
inserted or deleted meanwhile. `OFFSET n` reads and drops n rows, so it is capped (`MAX_OFFSET`).

`order` lists the columns the list is ordered by, each `column`, `column.asc()` or
`column.desc()`; the last one must be the primary key, so that the order is total. Give an index
whose columns are the filter's then the order's (see `Post`'s), or deep pages scan.

`total` counts at most `MAX_TOTAL + 1` rows of the filter: exact up to `MAX_TOTAL`, `None`
above, so no request counts a whole large table. It is a column of the page's own query, so a
page is one statement (one round trip, one snapshot), unless it is past the end of the list.

A cursor is opaque to clients: base64url of an HMAC (a key derived from the API's token key)
over the list it belongs to (`PageParams.scope`: the path and the filters), the number of rows
before the page, and the last row's values of the order's columns. A cursor that is malformed,
altered, or from another list or filter is refused as `InvalidPageRequest` (a 422 naming the
parameter, `app/exception_handlers.py`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from app.db.rows import Template, reads_detached, select_detached

RowT = TypeVar("RowT")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10_000
MAX_TOTAL = 10_000
MAX_CURSOR_LENGTH = 200

# What an order is: `(Post.created_at.desc(), Post.id.desc())`, `(User.id,)`.
Order = Sequence[ColumnElement[Any]]

_MAC_BYTES = 16  # 128 bits of HMAC-SHA256: cannot be guessed, keeps cursors short


class InvalidPageRequest(ValueError):
    """A page that cannot be served from these parameters: answered as a 422 for `parameter`."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@lru_cache(maxsize=4)
def cursor_key(secret: str) -> bytes:
    """The key cursors are signed with, derived from the API's token key (`JWT_SECRET_KEY`), so
    that a cursor's MAC says nothing about the token key, and no other setting is needed.
    Derived once per key, not on every list request."""
    return hmac.new(secret.encode(), b"megapolis-api list cursors v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class PageParams:
    """Which page of a list to serve: `limit` rows after `cursor` (the `next_cursor` of the page
    before), or from `offset`. `scope` names the list and its filters (a cursor only works
    where it was made); `key` signs cursors (`cursor_key`). Routes get it from `PageParamsDep`;
    a script builds it itself: `PageParams(key=cursor_key(settings.jwt_secret), limit=10)`."""

    key: bytes
    limit: int = DEFAULT_LIMIT
    offset: int | None = None
    cursor: str | None = None
    scope: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidPageRequest("limit", f"limit must be between 1 and {MAX_LIMIT}")
        if self.offset is not None and not 0 <= self.offset <= MAX_OFFSET:
            raise InvalidPageRequest(
                "offset", f"offset must be between 0 and {MAX_OFFSET}; use cursor to go deeper"
            )
        if self.offset is not None and self.cursor is not None:
            raise InvalidPageRequest(
                "cursor", "give either cursor or offset, not both (a cursor knows its position)"
            )


@dataclass(frozen=True)
class Page(Generic[RowT]):
    items: Sequence[RowT]
    total: int | None  # None: more than MAX_TOTAL
    limit: int
    offset: int  # rows before this page (for a cursor page, when its cursor was made)
    next_cursor: str | None  # None: this is the last page


async def paginate(
    session: AsyncSession, statement: Select[tuple[RowT]], *, order: Order, params: PageParams
) -> Page[RowT]:
    """The page `params` asks for of `statement` (its rows filtered, not ordered nor limited),
    in `order`."""
    columns = [_order_column(expression) for expression in order]
    if not columns or not columns[-1][0].primary_key:
        raise ValueError("a page order must end with the primary key (so that it is total)")
    keys = [column for column, _ in columns]
    position = params.offset or 0
    after: list[Any] | None = None
    if params.cursor is not None:
        position, after = _decode(params, len(keys))
    # In a read session nothing will change the rows: a page of one model is read outside the
    # ORM (`app/db/rows.py`): about a third less CPU. The model's columns come first.
    model = _model_of(statement) if reads_detached(session) else None
    query = _PageQuery(statement, order, columns, params.limit, position, after)
    rows: Sequence[tuple[Any, Sequence[Any]]]
    if model is not None:
        rows = await select_detached(session, model, query.template())
    else:
        page, _ = query.build()
        added = (*keys, _total_of(statement, keys[-1]))
        rows = [
            (row[0], row[1:]) for row in (await session.execute(page.add_columns(*added))).all()
        ]
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    items: list[RowT] = [item for item, _ in rows]
    if rows:
        counted = int(rows[0][1][-1])
    elif params.cursor is None and not position:
        counted = 0
    else:  # past the end: no row carried the total
        counted = int(await session.scalar(_bounded_count_query(statement, keys[-1])) or 0)
    next_cursor = None
    if more:
        last = tuple(rows[-1][1][:-1])
        next_cursor = _encode(params, position + len(rows), last)
    total = counted if counted <= MAX_TOTAL else None
    return Page(items, total, params.limit, position, next_cursor)


@dataclass(frozen=True)
class _PageQuery:
    """What a page reads: `statement`'s rows in `order` (`columns`: its terms, each a column and
    whether it descends), `limit` + 1 of them (to know if there is a next page) after the
    cursor's values `after`, or from `position`."""

    statement: Select[Any]
    order: Order
    columns: list[tuple[ColumnElement[Any], bool]]
    limit: int
    position: int
    after: list[Any] | None

    def build(self) -> tuple[Select[Any], list[BindParameter[Any]]]:
        """The page's statement (without the total), and the parameters it adds to
        `statement`'s: the cursor's values, the offset, the limit."""
        page = self.statement.order_by(*self.order)
        parameters: list[BindParameter[Any]] = []
        if self.after is not None:
            bounds = [
                literal(value, column.type)
                for (column, _), value in zip(self.columns, self.after, strict=True)
            ]
            parameters += bounds
            page = page.where(_after(self.columns, bounds))
        elif self.position:
            offset = bindparam("page_offset", self.position, Integer, unique=True)
            parameters.append(offset)
            page = page.offset(offset)
        parameters.append(rows := bindparam("page_rows", self.limit + 1, Integer, unique=True))
        return page.limit(rows), parameters

    def template(self) -> Template:
        """The page's statement as a `rows.Template`: built once per list, filter and kind of
        page (first, by cursor, by offset); then only its values change. Its key is the cache
        key of `statement` in `order` (the list and its filters, their values apart)."""
        shape = self.statement.order_by(*self.order)._generate_cache_key()
        kind = "cursor" if self.after is not None else "offset" if self.position else "first"
        own = shape.bindparams if shape is not None else []
        values = [parameter.effective_value for parameter in own]
        values += self.after or ([self.position] if self.position else [])
        values += [self.limit + 1, MAX_TOTAL + 1]

        def build() -> tuple[Select[Any], Sequence[Any], Sequence[BindParameter[Any]]]:
            page, parameters = self.build()
            keys = [column for column, _ in self.columns]
            added = (*keys, _total_of(self.statement, keys[-1]))
            return page, added, [*own, *parameters, _MAX_COUNTED]

        # Without a cache key (a construct SQLAlchemy cannot cache): built every time.
        return Template(None if shape is None else (kind, shape.key), values, build)


def _model_of(statement: Select[Any]) -> type[Any] | None:
    """The mapped class `statement` selects, when it selects one (`select(Post)`), else None."""
    [description, *others] = statement.column_descriptions
    entity = description.get("entity")
    return entity if not others and description.get("expr") is entity else None


def _order_column(expression: ColumnElement[Any]) -> tuple[ColumnElement[Any], bool]:
    """The column of an order term, and whether it is descending."""
    if isinstance(expression, UnaryExpression):
        if expression.modifier is operators.desc_op:
            return expression.element, True
        if expression.modifier is operators.asc_op:
            return expression.element, False
        raise ValueError(f"unsupported order term: {expression}")
    return expression, False


def _after(columns: list[tuple[ColumnElement[Any], bool]], bounds: list[Any]) -> Any:
    """Rows strictly after `bounds` (the last row's values) in the order: one row comparison
    when every column goes the same way (an index range scan on PostgreSQL and SQLite); else
    its expansion."""
    descending = {desc for _, desc in columns}
    if len(descending) == 1:
        keys, marks = tuple_(*(c for c, _ in columns)), tuple_(*bounds)
        return keys < marks if descending == {True} else keys > marks
    clauses = []
    for index, (column, desc) in enumerate(columns):
        equal = [columns[i][0] == bounds[i] for i in range(index)]
        beyond = column < bounds[index] if desc else column > bounds[index]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


# The most rows a total counts, a parameter of its own (a template's value: `_PageQuery.template`).
_MAX_COUNTED = bindparam("max_counted", MAX_TOTAL + 1, Integer, unique=True)


def _bounded_count_query(statement: Select[Any], key: ColumnElement[Any]) -> Select[tuple[int]]:
    """How many rows `statement` has, at most MAX_TOTAL + 1: `SELECT count(*) FROM (SELECT id
    ... LIMIT MAX_TOTAL + 1)` reads at most that many index entries."""
    rows = statement.with_only_columns(key, maintain_column_froms=True).order_by(None)
    return select(func.count()).select_from(rows.limit(_MAX_COUNTED).subquery())


def _total_of(statement: Select[Any], key: ColumnElement[Any]) -> Any:
    """The bounded total as a column of the page's own query, so a page is one statement and
    one round trip: PostgreSQL and SQLite compute an uncorrelated subquery once."""
    return _bounded_count_query(statement, key).scalar_subquery()


# --- cursors --------------------------------------------------------------------------------


def _encode(params: PageParams, position: int, values: tuple[Any, ...]) -> str:
    body = json.dumps([position, [_to_json(value) for value in values]], separators=(",", ":"))
    payload = body.encode()
    cursor = base64.urlsafe_b64encode(_mac(params, payload) + payload).rstrip(b"=").decode()
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError("a cursor would be too long: order lists by short columns")
    return cursor


def _decode(params: PageParams, size: int) -> tuple[int, list[Any]]:
    assert params.cursor is not None
    invalid = InvalidPageRequest(
        "cursor",
        "not a cursor of this list with these filters (or altered): "
        "use the next_cursor of the page before, with the same filters",
    )
    text = params.cursor
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise invalid from exc
    mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(params, payload)):
        raise invalid
    try:
        position, values = json.loads(payload)
        decoded = [_from_json(value) for value in values]
    except (ValueError, TypeError, KeyError) as exc:  # signed by us: only if the format changed
        raise invalid from exc
    if not isinstance(position, int) or position < 0 or len(decoded) != size:
        raise invalid
    return position, decoded


def _mac(params: PageParams, payload: bytes) -> bytes:
    message = params.scope.encode() + b"\0" + payload
    return hmac.new(params.key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot put a {type(value).__name__} in a cursor")


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        return datetime.fromisoformat(value["t"])
    return value
