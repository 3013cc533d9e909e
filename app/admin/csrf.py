"""CSRF protection for the admin site (SQLAdmin ships none).

Synchronizer tokens: one random token per admin session, kept in the session (a signed,
HttpOnly cookie), rendered into every page (`csrf_token` in the templates: a hidden field of the
sign-in form, a `<meta>` the pages' script copies into every other form and into SQLAdmin's AJAX
deletes as `X-CSRF-Token`). `CSRFMiddleware` refuses every POST, PUT, PATCH and DELETE under
/admin whose form field `csrf_token` or header `X-CSRF-Token` is not the session's token: 403,
before SQLAdmin sees the request. SameSite=Lax on the cookie is a second line, not the only one.
GET requests never change data (SQLAdmin's GET "actions" only show a confirmation form).
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.middlewares.request_limits import replay

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = b"x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFUSED = json.dumps({"detail": "CSRF token missing or invalid"}).encode()


def csrf_token(request: Request) -> str:
    """The session's token, made on first use (a page that renders a form)."""
    token = request.session.get(SESSION_KEY)
    if not isinstance(token, str):
        token = new_csrf_token(request.session)
    return token


def new_csrf_token(session: dict[str, Any]) -> str:
    """A new token for the session (at sign-in: a token seen before it is worth nothing)."""
    token = secrets.token_urlsafe(32)
    session[SESSION_KEY] = token
    return token


class CSRFMiddleware:
    """Inside Starlette's SessionMiddleware (it reads `scope["session"]`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        expected = scope.get("session", {}).get(SESSION_KEY)
        sent = await sent_token(scope, body)
        if not (
            isinstance(expected, str)
            and sent is not None
            and hmac.compare_digest(sent.encode(), expected.encode())
        ):
            await refuse(send)
            return
        await self.app(scope, replay(body, receive), send)


async def sent_token(scope: Scope, body: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == HEADER:
            return str(value.decode("latin-1"))
    content_type = dict(scope["headers"]).get(b"content-type", b"")
    if not content_type.startswith((b"application/x-www-form-urlencoded", b"multipart/form-data")):
        return None
    try:
        form = await Request(scope, replay(body, None)).form()
    except Exception:  # a malformed form body has no token
        return None
    value = form.get(FORM_FIELD)
    return value if isinstance(value, str) else None


async def read_body(receive: Receive) -> bytes:
    """The whole body (already bounded by app/middlewares/request_limits.py)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def refuse(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(REFUSED)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": REFUSED})
