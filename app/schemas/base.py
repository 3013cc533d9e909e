from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    """Base of every response schema: reads ORM objects' attributes."""

    model_config = ConfigDict(from_attributes=True)


class RequestSchema(BaseModel):
    """Base of every request body: unknown fields are an error, not silently dropped. Field
    types come from `app/fields.py`."""

    model_config = ConfigDict(extra="forbid")


def optional_not_null() -> Any:
    """The default of a field a PATCH may leave out: absent means unchanged, and `null` is
    refused (422) because the column cannot be empty. Use it as
    `title: Title = optional_not_null()`; services apply `model_dump(exclude_unset=True)`.
    (Typed `Any` so that the field keeps its non-optional type.)"""
    return Field(default=None)


ItemT = TypeVar("ItemT")


class Page(Schema, Generic[ItemT]):
    """One page of a list (services return `app.db.pagination.Page`, read by attributes)."""

    items: list[ItemT]
    total: int | None = Field(
        description="How many rows the list's filters match: exact up to 10,000, null above"
    )
    limit: int
    offset: int = Field(description="How many rows come before this page")
    next_cursor: str | None = Field(
        description="Pass it as `cursor` for the next page; null on the last page"
    )
