"""Every model is imported here, so `Base.metadata` (and Alembic's autogenerate) sees it."""

from app.models.audit_event import AuditEvent
from app.models.post import Post
from app.models.user import User

__all__ = ["AuditEvent", "Post", "User"]
