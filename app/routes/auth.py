from __future__ import annotations

from fastapi import APIRouter

from app.dependencies import CurrentUser
from app.schemas.errors import responses
from app.schemas.user import CurrentUserResponse, UserSummary

router = APIRouter(prefix="/auth", tags=["auth"])


@router.get("/me", response_model=CurrentUserResponse, responses=responses(401, 503))
async def read_me(user: CurrentUser) -> CurrentUserResponse:
    """The user behind the API token."""
    return CurrentUserResponse(user=UserSummary(id=user.id, email=user.email))
