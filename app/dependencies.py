"""Shared FastAPI dependencies: settings, the caller behind the API token, the superuser guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.config import Settings
from app.db.session import Database
from app.errors import NotAuthenticated, PermissionDenied
from app.models.user import User
from app.security import InvalidToken, read_user_id


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

# auto_error=False: we answer 401 ourselves, whatever FastAPI version decides for missing headers.
bearer_scheme = HTTPBearer(auto_error=False, description="The API's own token")


async def get_current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> User:
    """The active user behind a valid API token; 401 for anything else, including a user who
    was deleted or deactivated after the token was issued.

    It reads the user with one autocommitted query and no session (this runs on every
    authenticated request); the object is detached, and services `session.add()` it when they
    change it.
    """
    if credentials is None:
        raise NotAuthenticated()
    settings: Settings = request.app.state.settings
    try:
        user_id = read_user_id(credentials.credentials, settings.jwt_secret)
    except InvalidToken as exc:
        raise NotAuthenticated(str(exc), error="invalid_token") from exc
    database: Database = request.app.state.database
    user = await User.read_detached(database.engine, user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated("User not found or inactive", error="invalid_token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise PermissionDenied("Superuser privileges required")
    return user


Superuser = Annotated[User, Depends(require_superuser)]
