"""`/admin`: the admin site (SQLAdmin), mounted on the app by `install_admin`.

Who gets in and how long: `app/admin/authentication.py`. CSRF: `app/admin/csrf.py`. What can be
done there, and through which services: `app/admin/views.py`. The templates in
`app/admin/templates/` extend SQLAdmin's own (`sqladmin_original/...`): the sign-in page with a
CSRF field, every page with the CSRF token for its forms and AJAX calls.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqladmin import Admin
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from app.admin.authentication import AdminAuthentication
from app.admin.csrf import CSRFMiddleware, csrf_token
from app.admin.views import VIEWS, form_errors_are_not_logged
from app.config import Settings

TEMPLATES = Path(__file__).resolve().parent / "templates"
BASE_URL = "/admin"


class AppSessions:
    """SQLAdmin's session maker for its reads: the app's own (`app.state.database`, made in the
    lifespan, after the admin is mounted), found when a session is needed."""

    class_ = AsyncSession

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def configure(self, **_: Any) -> None:
        """SQLAdmin sets autoflush/autocommit off: the app's sessions already are."""

    def __call__(self, **options: Any) -> AsyncSession:
        session: AsyncSession = self.app.state.database.sessionmaker(**options)
        return session


class LoginPage:
    """The sign-in page again, with a message and a status (the refused sign-ins)."""

    def __init__(self) -> None:
        self.admin: Admin | None = None

    async def __call__(
        self,
        request: Request,
        message: str,
        status_code: int,
        headers: dict[str, str] | None = None,
    ) -> Response:
        assert self.admin is not None
        context = {"error": message}
        response: Response = await self.admin.templates.TemplateResponse(
            request, "sqladmin/login.html", context, status_code=status_code
        )
        response.headers.update(headers or {})
        return response


def install_admin(app: FastAPI, settings: Settings) -> Admin:
    login_page = LoginPage()
    admin = Admin(
        app,
        session_maker=AppSessions(app),  # type: ignore[arg-type]
        base_url=BASE_URL,
        title="Megapolis admin",
        templates_dir=str(TEMPLATES),
        authentication_backend=AdminAuthentication(app, settings, login_page),
    )
    login_page.admin = admin
    # Inside the session middleware SQLAdmin adds for the authentication backend.
    admin.admin.user_middleware.append(Middleware(CSRFMiddleware))
    admin.admin.middleware_stack = None
    admin.templates.env.globals["csrf_token"] = csrf_token
    logging.getLogger("sqladmin.application").addFilter(form_errors_are_not_logged)
    for view in VIEWS:
        # A subclass per app: SQLAdmin sets the session maker on the view class.
        admin.add_model_view(type(view.__name__, (view,), {"main_app": app}))
    return admin
