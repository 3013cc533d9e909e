from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.db.pagination import Page
from app.dependencies import CurrentUser, ReadSessionDep, SessionDep, Superuser
from app.fields import MAX_INT_ID
from app.models.user import User
from app.schemas.errors import BODY_ERRORS, responses
from app.schemas.user import UserCreateRequest, UserPage, UserResponse, UserUpdateRequest
from app.services.audit import Actor
from app.services.user import UserService

router = APIRouter(prefix="/users", tags=["users"], responses=responses(401, 503))

UserId = Annotated[int, Path(ge=1, le=MAX_INT_ID, description="The user's id")]


@router.get("/", response_model=UserPage, responses=responses(403))
async def list_users(
    session: ReadSessionDep,
    _: Superuser,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT_ID)] = 0,
) -> Page[User]:
    """List users, ordered by id (superuser only)."""
    return await UserService.list_users(session, limit=limit, offset=offset)


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
async def read_user(user_id: UserId, session: ReadSessionDep, actor: CurrentUser) -> User:
    """A user's record (superuser, or the user itself)."""
    return await UserService.get_user(session, actor, user_id)


@router.patch(
    "/{user_id}", response_model=UserResponse, responses=responses(*BODY_ERRORS, 403, 404, 409)
)
async def update_user(
    user_id: UserId, data: UserUpdateRequest, session: SessionDep, actor: CurrentUser
) -> User:
    """Change a user's record (superuser, or the user itself). Deactivating a user or changing
    their email revokes their API tokens."""
    user = await UserService.get_user(session, actor, user_id)
    return await UserService.update_user(session, Actor.of(actor), user, data)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(403, 404))
async def delete_user(user_id: UserId, session: SessionDep, actor: CurrentUser) -> Response:
    """Delete a user and their data (superuser, or the user itself)."""
    user = await UserService.get_user(session, actor, user_id)
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
