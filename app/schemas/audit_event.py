from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from app.schemas.base import Page, Schema


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
