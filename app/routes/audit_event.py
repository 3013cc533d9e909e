"""`GET /api/v1/audit-events/`: the audit log, for superusers. Append-only: no route writes it
(the services do, with each change: app/services/audit_event.py); other methods answer 405."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.db.pagination import Page
from app.dependencies import PageParamsDep, ReadSessionDep, Superuser
from app.fields import MAX_INT_ID
from app.models.audit_event import AuditEvent
from app.schemas.audit_event import AuditEventListRequest, AuditEventPage
from app.schemas.errors import responses
from app.services.audit_event import AuditEventService

router = APIRouter(prefix="/audit-events", tags=["audit"], responses=responses(401, 503))

Id = Annotated[int | None, Query(ge=1, le=MAX_INT_ID)]


@router.get("/", response_model=AuditEventPage, responses=responses(403))
async def list_audit_events(
    session: ReadSessionDep,
    _: Superuser,
    page: PageParamsDep,
    target_type: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[a-z][a-z0-9_]*$", description="`user`, `post`, ..."),
    ] = None,
    target_id: Id = None,
    actor_id: Id = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z][a-z0-9_]*\.[a-z_]+$",
            description="`user.deactivate`, `post.delete`, ...",
        ),
    ] = None,
) -> Page[AuditEvent]:
    """The audit log, newest first, filtered by every parameter given (superuser only); paged
    like every list (`limit`, and `cursor` or `offset`)."""
    filters = AuditEventListRequest(
        target_type=target_type, target_id=target_id, actor_id=actor_id, action=action
    )
    return await AuditEventService.list_events(session, page, filters)
