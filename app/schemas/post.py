from __future__ import annotations

from datetime import datetime

from app.fields import LongText, Title
from app.schemas.base import Page, RequestSchema, Schema, optional_not_null


class PostCreateRequest(RequestSchema):
    title: Title
    body: LongText = ""


class PostUpdateRequest(RequestSchema):
    """Fields to change; absent fields stay as they are."""

    title: Title = optional_not_null()
    body: LongText = optional_not_null()


class PostResponse(Schema):
    id: int
    title: str
    body: str
    author_id: int
    created_at: datetime
    updated_at: datetime


class PostPage(Page[PostResponse]):
    pass
