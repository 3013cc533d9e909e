"""Shared FastAPI dependencies: settings, the caller behind the API token, the superuser guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from app.config import Settings
from app.db.session import Database
from app.errors import NotAuthenticated, PermissionDenied
from app.models.user import User
from app.security import InvalidToken, read_user_id


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


class BearerUser(HTTPBearer):
    """The API's bearer-token security scheme, resolving straight to the caller.

    The active user behind a valid API token; 401 for anything else, including a user who was
    deleted or deactivated after the token was issued. One dependency (not a scheme plus a
    function that depends on it) because it runs on every authenticated request; OpenAPI still
    shows the scheme. The user is read with one autocommitted query and no session; the object
    is detached, and services `session.add()` it when they change it.
    """

    async def __call__(self, request: Request) -> User:  # type: ignore[override]
        credentials = await super().__call__(request)
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


# auto_error=False: we answer 401 ourselves, whatever FastAPI version decides for missing headers.
get_current_user = BearerUser(
    auto_error=False, scheme_name="APIToken", description="The API's own token"
)
CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise PermissionDenied("Superuser privileges required")
    return user


Superuser = Annotated[User, Depends(require_superuser)]
