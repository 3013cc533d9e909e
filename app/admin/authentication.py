"""Who may use the admin site: an active superuser linked to a Supabase user, signed in with
that Supabase user's email and password.

- Sign-in (`POST /admin/login`, fields `username` = the email, `password`): rate-limited per
  client address (`RATE_LIMIT_ADMIN_LOGIN`), then checked by Supabase's password grant
  (`app/supabase/remote.py`); the local account linked to that Supabase user (`supabase_id`)
  must be active and a superuser. Anyone else stays on the sign-in page with a message and gets
  no session.
- The session: Starlette's signed cookie (`SessionMiddleware`), HttpOnly, `Secure` in
  production, `SameSite=Lax`, path /admin; it holds the account's id, a digest of its security
  stamp, the sign-in time and the CSRF token. It lasts `SESSION_SECONDS` from sign-in at most
  (the cookie's own age restarts with each answer; the sign-in time does not).
- Every request reads the account again: deactivated, demoted, unlinked, or its tokens revoked
  (a new security stamp: `POST /auth/logout`, `revoke-tokens`, deactivation, an email change),
  and the session is over at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING

from sqladmin.authentication import AuthenticationBackend
from starlette.requests import Request
from starlette.responses import Response

from app.admin.csrf import new_csrf_token
from app.authentication import read_caller
from app.config import AppEnv, Settings
from app.errors import SupabaseNotConfigured, SupabaseUnavailable
from app.models.user import User
from app.rate_limit.client import client_address
from app.rate_limit.limiter import ADMIN_LOGIN, RateLimiter
from app.supabase.client import SupabaseAuth
from app.supabase.remote import CredentialsRefused

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.admin.site import LoginPage

logger = logging.getLogger("app.admin")

SESSION_COOKIE = "megapolis_admin"
SESSION_SECONDS = 8 * 60 * 60
WRONG_CREDENTIALS = "Wrong email or password."
NOT_AN_ADMIN = "This account may not use the admin site: only an active superuser can."
MISSING_FIELDS = "Enter your email and password."


def session_secret(settings: Settings) -> str:
    """The cookie's signing key: derived from JWT_SECRET_KEY, never the key itself."""
    return hmac.new(settings.jwt_secret.encode(), b"megapolis admin session", "sha256").hexdigest()


def stamp_digest(stamp: str) -> str:
    """What the session keeps of the security stamp: enough to notice a new one, and nothing
    an API token carries."""
    return hashlib.sha256(f"admin-session:{stamp}".encode()).hexdigest()[:32]


def may_administer(user: User | None) -> bool:
    return user is not None and user.is_active and user.is_superuser and bool(user.supabase_id)


class AdminAuthentication(AuthenticationBackend):
    def __init__(self, app: FastAPI, settings: Settings, login_page: LoginPage) -> None:
        super().__init__(
            secret_key=session_secret(settings),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_SECONDS,
            path="/admin",
            same_site="lax",
            https_only=settings.APP_ENV is AppEnv.production,
        )
        self.app = app
        self.login_page = login_page

    async def login(self, request: Request) -> Response | bool:
        limiter: RateLimiter = self.app.state.rate_limiter
        retry_after = await limiter.hit(ADMIN_LOGIN, client_address(request))
        if retry_after is not None:
            message = f"Too many sign-in attempts from this address; try again in {retry_after} s."
            return await self.login_page(request, message, 429, {"Retry-After": str(retry_after)})
        form = await request.form()
        email, password = form.get("username"), form.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
            return await self.login_page(request, MISSING_FIELDS, 400)
        supabase: SupabaseAuth = self.app.state.supabase
        try:
            identity = await supabase.sign_in_with_password(email.strip(), password)
        except CredentialsRefused:
            return await self.login_page(request, WRONG_CREDENTIALS, 400)
        except (SupabaseUnavailable, SupabaseNotConfigured) as exc:
            return await self.login_page(request, str(exc.detail), 503)
        async with self.app.state.database.read_sessionmaker() as session:
            user = await User.get_by_supabase_id(session, identity.id)
        if not may_administer(user):
            logger.info("Admin sign-in refused: not an active superuser")
            return await self.login_page(request, NOT_AN_ADMIN, 403)
        assert user is not None
        request.session.clear()
        request.session.update(
            {"uid": user.id, "stamp": stamp_digest(user.security_stamp), "at": int(time.time())}
        )
        new_csrf_token(request.session)
        logger.info("Admin sign-in: user %s", user.id)
        return True

    async def logout(self, request: Request) -> Response | bool:
        request.session.clear()
        return False  # to the sign-in page

    async def authenticate(self, request: Request) -> Response | bool:
        """Each request: the session is young enough and its account still may administer,
        with the same security stamp. Otherwise the session is cleared (to the sign-in page)."""
        user = await self.session_user(request)
        if user is None:
            csrf = request.session.get("csrf")
            request.session.clear()
            if csrf is not None:
                request.session["csrf"] = csrf  # the sign-in form still needs it
            return False
        request.state.admin_user = user
        return True

    async def session_user(self, request: Request) -> User | None:
        uid, stamp, at = (request.session.get(key) for key in ("uid", "stamp", "at"))
        if not isinstance(uid, int) or not isinstance(stamp, str) or not isinstance(at, int):
            return None
        if not 0 <= time.time() - at <= SESSION_SECONDS:
            return None
        user = await read_caller(self.app.state.database, uid)
        if not may_administer(user):
            return None
        assert user is not None
        if not hmac.compare_digest(stamp_digest(user.security_stamp), stamp):
            return None
        return user

    async def get_user_id(self, request: Request) -> int | None:
        user = getattr(request.state, "admin_user", None)
        return user.id if isinstance(user, User) else None


def admin_user(request: Request) -> User:
    """The superuser signed in to the admin site (set by `authenticate` on every request)."""
    user = request.state.admin_user
    assert isinstance(user, User)
    return user
