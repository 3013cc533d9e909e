from __future__ import annotations

from datetime import datetime

from app.fields import Email, Flag, FullName
from app.schemas.base import Page, RequestSchema, Schema


class UserCreateRequest(RequestSchema):
    email: Email
    full_name: FullName | None = None
    is_active: Flag = True
    is_superuser: Flag = False


class UserUpdateRequest(RequestSchema):
    """Fields to change; absent fields stay as they are. Only a superuser may send `email`,
    `is_active` or `is_superuser`."""

    email: Email | None = None
    full_name: FullName | None = None
    is_active: Flag | None = None
    is_superuser: Flag | None = None


class UserResponse(Schema):
    id: int
    email: str
    supabase_id: str | None
    full_name: str | None
    is_active: bool
    is_superuser: bool
    created_at: datetime
    updated_at: datetime


class UserPage(Page[UserResponse]):
    pass


class UserSummary(Schema):
    id: int
    email: str


class CurrentUserResponse(Schema):
    user: UserSummary
