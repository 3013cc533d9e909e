"""Security headers on every answer (errors and the last-resort 500 included).

What OWASP's REST Security Cheat Sheet asks of a JSON API: no MIME sniffing, no framing, no
caching of answers that may hold personal data, no referrer, and a CSP that lets a JSON answer
load nothing. The documentation pages (Swagger UI, ReDoc) load scripts and styles from a CDN, so
they get neither the CSP nor `no-store`; they still cannot be framed.

`Strict-Transport-Security` belongs to whatever terminates TLS (the reverse proxy).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVERY_ANSWER = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
API_ANSWER = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, docs_paths: Iterable[str | None] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(path for path in docs_paths if path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_docs = scope["path"] in self.docs_paths

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = EVERY_ANSWER if is_docs else [*EVERY_ANSWER, *API_ANSWER, NO_STORE]
                headers += [(name, value) for name, value in extra if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
