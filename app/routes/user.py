from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.pagination import Page
from app.dependencies import (
    CurrentUser,
    PageParamsDep,
    ReadSessionDep,
    SessionDep,
    Superuser,
    check_owner_or_superuser,
    owner_or_superuser,
)
from app.fields import MAX_INT_ID
from app.models.user import User
from app.schemas.errors import BODY_ERRORS, responses
from app.schemas.user import UserCreateRequest, UserPage, UserResponse, UserUpdateRequest
from app.services.audit_event import Actor
from app.services.user import UserService

router = APIRouter(prefix="/users", tags=["users"], responses=responses(401, 503))

UserId = Annotated[int, Path(ge=1, le=MAX_INT_ID, description="The user's id")]


async def find_user(user_id: UserId, caller: CurrentUser, session: AsyncSession) -> User:
    """The user of the path; the caller itself is not read again. Anyone but a superuser is
    refused (403) before the lookup, so that a 404 does not tell them which ids exist."""
    if user_id == caller.id:
        return caller
    check_owner_or_superuser(caller, user_id)  # a user's record is owned by that user
    return await UserService.find_user(session, user_id)


async def user_to_read(user_id: UserId, caller: CurrentUser, session: ReadSessionDep) -> User:
    return await find_user(user_id, caller, session)


async def user_for_change(user_id: UserId, caller: CurrentUser, session: SessionDep) -> User:
    return await find_user(user_id, caller, session)


# The user of the path, for that user or a superuser (403 for others, existing or not).
ReadableUser = Annotated[User, Depends(owner_or_superuser(user_to_read))]
EditableUser = Annotated[User, Depends(owner_or_superuser(user_for_change))]


@router.get("/", response_model=UserPage, responses=responses(403))
async def list_users(
    session: ReadSessionDep,
    _: Superuser,
    page: PageParamsDep,
) -> Page[User]:
    """List users, ordered by id (superuser only)."""
    return await UserService.list_users(session, page)


@router.post(
    "/",
    response_model=UserResponse,
    status_code=status.HTTP_201_CREATED,
    responses=responses(*BODY_ERRORS, 403, 409),
)
async def create_user(data: UserCreateRequest, session: SessionDep, actor: Superuser) -> User:
    """Create a user (superuser only)."""
    return await UserService.create_user(session, Actor.of(actor), data)


@router.get("/me", response_model=UserResponse)
async def read_own_user(user: CurrentUser) -> User:
    """The caller's own record."""
    return user


@router.patch("/me", response_model=UserResponse, responses=responses(*BODY_ERRORS, 403, 409))
async def update_own_user(data: UserUpdateRequest, session: SessionDep, user: CurrentUser) -> User:
    """Change the caller's own record; `email`, `is_active` and `is_superuser` need a
    superuser."""
    return await UserService.update_user(session, Actor.of(user), user, data)


@router.get("/{user_id}", response_model=UserResponse, responses=responses(403, 404))
async def read_user(user: ReadableUser) -> User:
    """A user's record (superuser, or the user itself)."""
    return user


@router.patch(
    "/{user_id}", response_model=UserResponse, responses=responses(*BODY_ERRORS, 403, 404, 409)
)
async def update_user(
    data: UserUpdateRequest, user: EditableUser, session: SessionDep, actor: CurrentUser
) -> User:
    """Change a user's record (superuser, or the user itself). Deactivating a user or changing
    their email revokes their API tokens."""
    return await UserService.update_user(session, Actor.of(actor), user, data)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404))
async def delete_user(user: EditableUser, session: SessionDep, actor: CurrentUser) -> Response:
    """Delete a user and their data (superuser, or the user itself)."""
    await UserService.delete_user(session, Actor.of(actor), user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{user_id}/revoke-tokens",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(403, 404),
)
async def revoke_user_tokens(user_id: UserId, session: SessionDep, actor: Superuser) -> Response:
    """Revoke every API token of a user (superuser only): they answer 401 from now on."""
    user = await UserService.find_user(session, user_id)
    await UserService.revoke_tokens(session, Actor.of(actor), user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
