"""The admin site's views. Lists, search and details are SQLAdmin's; every change goes through
the services the API uses (their rules, token revocation, the delete cascade, the audit log
with the signed-in superuser as actor), never through SQLAdmin's own writes."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI
from pydantic import ValidationError
from sqladmin import ModelView, action, expose
from sqladmin.authentication import login_required
from sqladmin.filters import BooleanFilter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.admin.authentication import admin_user
from app.fields import MAX_INT_ID
from app.models.audit_event import AuditEvent
from app.models.post import Post
from app.models.user import User
from app.schemas.user import UserUpdateRequest
from app.services.audit_event import Actor
from app.services.post import PostService
from app.services.user import UserService


class FormError(ValueError):
    """A value the form's user must correct: SQLAdmin shows its text on the form (400). Not a
    server error, so not logged as one (`form_errors_are_not_logged`)."""


def form_errors_are_not_logged(record: logging.LogRecord) -> bool:
    """A filter for SQLAdmin's logger, which logs every exception of a create or edit with its
    traceback at ERROR, a correctable value included."""
    return not (record.exc_info and isinstance(record.exc_info[1], FormError))


class ServiceBackedView(ModelView):
    """SQLAdmin's reads, our services' writes. `main_app` is set per app (`app/admin/site.py`)."""

    main_app: ClassVar[FastAPI]
    can_create = False
    can_export = False
    can_import = False
    page_size = 50

    def actor(self, request: Request) -> Actor:
        return Actor.of(admin_user(request))

    @staticmethod
    def row_id(pk: Any) -> int:
        """The id SQLAdmin passes as text; 404 for anything else."""
        if not str(pk).isdigit() or int(str(pk)) > MAX_INT_ID:
            raise HTTPException(status_code=404)
        return int(str(pk))


EDITABLE = ("full_name", "is_active", "is_superuser")


class UserAdmin(ServiceBackedView, model=User):
    name = "User"
    icon = "fa-solid fa-user"
    column_list = [User.id, User.email, User.full_name, User.is_active, User.is_superuser]
    column_details_exclude_list = [User.security_stamp]
    column_searchable_list = [User.email]
    column_filters = [BooleanFilter(User.is_active), BooleanFilter(User.is_superuser)]
    column_sortable_list = [User.id, User.email]
    form_columns = [User.full_name, User.is_active, User.is_superuser]

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        """Through `UserService.update_user`: deactivation revokes tokens, the change is audited.
        An invalid value is SQLAdmin's form error (it shows the exception's text)."""
        values = {field: data[field] for field in EDITABLE if field in data}
        if "full_name" in values:
            values["full_name"] = values["full_name"] or None  # an emptied field clears it
        try:
            changes = UserUpdateRequest(**values)
        except ValidationError as exc:
            raise FormError(exc.errors()[0]["msg"]) from None
        async with self.main_app.state.database.sessionmaker() as session:
            user = await UserService.find_user(session, self.row_id(pk))
            return await UserService.update_user(session, self.actor(request), user, changes)

    async def delete_model(self, request: Request, pk: Any) -> None:
        """Through `UserService.delete_user`: their posts go with them (the database cascade)."""
        async with self.main_app.state.database.sessionmaker() as session:
            user = await UserService.find_user(session, self.row_id(pk))
            await UserService.delete_user(session, self.actor(request), user)

    @action(name="revoke-tokens", label="Revoke tokens", add_in_list=False)
    @login_required
    async def confirm_revoke_tokens(self, request: Request) -> Response:
        """SQLAdmin's actions are GET links: this one only asks, with a POST form (CSRF token
        included) to `revoke_tokens`."""
        pks = [pk for pk in request.query_params.get("pks", "").split(",") if pk.isdigit()]
        async with self.main_app.state.database.read_sessionmaker() as session:
            users = [await User.get_by_id(session, int(pk)) for pk in pks[:100]]
        templates = self._admin_ref.templates
        context = {"model_view": self, "users": [user for user in users if user is not None]}
        return await templates.TemplateResponse(request, "admin/revoke_tokens.html", context)

    @expose("/revoke-tokens", methods=["POST"])
    @login_required
    async def revoke_tokens(self, request: Request) -> Response:
        """Through `UserService.revoke_tokens` (audited): every API token of the users answers
        401 from now on, and their admin sessions end."""
        form = await request.form()
        ids = [int(pk) for pk in form.getlist("pks") if isinstance(pk, str) and pk.isdigit()]
        async with self.main_app.state.database.sessionmaker() as session:
            for user_id in ids[:100]:
                user = await User.get_by_id(session, user_id)
                if user is not None:
                    await UserService.revoke_tokens(session, self.actor(request), user)
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)


class PostAdmin(ServiceBackedView, model=Post):
    name = "Post"
    icon = "fa-solid fa-file-lines"
    can_edit = False
    column_list = [Post.id, Post.title, Post.author_id, Post.created_at]
    column_searchable_list = [Post.title]
    column_sortable_list = [Post.id, Post.created_at]
    column_default_sort = [(Post.created_at, True), (Post.id, True)]

    async def delete_model(self, request: Request, pk: Any) -> None:
        """Through `PostService.delete_post` (audited)."""
        async with self.main_app.state.database.sessionmaker() as session:
            post = await PostService.get_post(session, self.row_id(pk))
            await PostService.delete_post(session, self.actor(request), post)


class AuditEventAdmin(ServiceBackedView, model=AuditEvent):
    """Read only: the log is append-only everywhere."""

    name = "Audit event"
    icon = "fa-solid fa-clock-rotate-left"
    can_edit = False
    can_delete = False
    column_list = [
        AuditEvent.id,
        AuditEvent.at,
        AuditEvent.actor,
        AuditEvent.actor_id,
        AuditEvent.action,
        AuditEvent.target_type,
        AuditEvent.target_id,
        AuditEvent.changes,
    ]
    column_searchable_list = [AuditEvent.action]
    column_default_sort = [(AuditEvent.id, True)]


VIEWS: list[type[ServiceBackedView]] = [UserAdmin, PostAdmin, AuditEventAdmin]
