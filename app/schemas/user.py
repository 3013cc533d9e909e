from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, EmailStr, Field, StringConstraints

from app.models.user import EMAIL_MAX_LENGTH, normalize_email
from app.schemas.base import RequestSchema, Schema

# No control characters (C0, DEL, C1): PostgreSQL refuses NUL in text, and newlines or terminal
# escapes have no place in a name. (Lone UTF-16 surrogates are refused by pydantic itself.)
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1F\x7F-\x9F]*$"

Email = Annotated[EmailStr, Field(max_length=EMAIL_MAX_LENGTH), AfterValidator(normalize_email)]
FullName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=NO_CONTROL_CHARACTERS)
]


class UserCreateRequest(RequestSchema):
    email: Email
    full_name: FullName | None = None
    is_active: bool = True
    is_superuser: bool = False


class UserUpdateRequest(RequestSchema):
    """Fields to change; absent fields stay as they are. Only a superuser may send `email`,
    `is_active` or `is_superuser`."""

    email: Email | None = None
    full_name: FullName | None = None
    is_active: bool | None = None
    is_superuser: bool | None = None


class UserResponse(Schema):
    id: int
    email: str
    supabase_id: str | None
    full_name: str | None
    is_active: bool
    is_superuser: bool
    created_at: datetime
    updated_at: datetime


class UserPage(Schema):
    items: list[UserResponse]
    total: int
    limit: int
    offset: int


class UserSummary(Schema):
    id: int
    email: str


class CurrentUserResponse(Schema):
    user: UserSummary
