"""One page of a query's rows, and how many rows the query has in all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class Page(Generic[RowT]):
    items: Sequence[RowT]
    total: int
    limit: int
    offset: int


async def paginate(
    session: AsyncSession, statement: Select[tuple[RowT]], *, limit: int, offset: int
) -> Page[RowT]:
    """`limit` rows of `statement` from `offset`, and the count of all its rows (its ORDER BY
    dropped for the count)."""
    counted: Select[Any] = select(func.count()).select_from(statement.order_by(None).subquery())
    total = await session.scalar(counted)
    items = await session.scalars(statement.limit(limit).offset(offset))
    return Page(items=items.all(), total=int(total or 0), limit=limit, offset=offset)
