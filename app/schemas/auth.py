from __future__ import annotations

from datetime import datetime

from app.schemas.base import Schema
from app.schemas.user import UserSummary


class SupabaseTokenExchange(Schema):
    message: str = "Token verified successfully"
    token: str
    """The API's own token: send it as `Authorization: Bearer <token>`."""
    user: UserSummary
    expires_at: datetime
    """When `token` expires (its `exp`), ISO 8601 in UTC."""
