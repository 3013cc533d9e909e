from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from app.schemas.base import Page, RequestSchema, Schema


class AuditEventListRequest(RequestSchema):
    """The list's filters (each optional; all given must match). The route checks each query
    parameter's shape; the service takes them as one value."""

    target_type: str | None = None
    target_id: int | None = None
    actor_id: int | None = None
    action: str | None = None


class AuditEventResponse(Schema):
    id: int
    at: datetime
    actor_id: int | None
    actor: Literal["user", "superuser", "webhook", "sync", "cli"]
    action: str
    target_type: str
    target_id: int
    changes: dict[str, list[Any]]
    request_id: str | None


class AuditEventPage(Page[AuditEventResponse]):
    pass
