"""Refuse oversized URLs (414) and header sections (431) before any of them is parsed further.

Uvicorn's default HTTP parser (httptools) puts no limit on either: a client could send megabytes
of headers and the app would decode, match and log them. The server has already read them by
then, so a reverse proxy in front should refuse them first; this is the app's own bound.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.middlewares.body_limit import json_error

# The API's URLs are short (ids, limit, offset); 8 KiB is what most servers allow.
MAX_URL_BYTES = 8 * 1024
# Supabase's `sb-<ref>-auth-token` header holds a whole session (tokens and user): a few KiB,
# split over several headers past ~3 KiB each. 64 KiB leaves a wide margin.
MAX_HEADER_BYTES = 64 * 1024


class RequestHeadLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_url_bytes: int = MAX_URL_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
            if len(raw_path) + len(scope.get("query_string", b"")) > self.max_url_bytes:
                await self._refuse(send, 414, f"URL longer than {self.max_url_bytes} bytes")
                return
            # As on the wire: "name: value\r\n" for each header.
            size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_header_bytes:
                detail = f"Request headers larger than {self.max_header_bytes} bytes"
                await self._refuse(send, 431, detail)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        start, body = json_error(status, detail)
        await send(start)
        await send(body)
