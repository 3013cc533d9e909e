"""Request id, security headers, access log and last-resort error handling, as one pure ASGI
middleware: everything that wraps each answer, in one layer (cheaper than BaseHTTPMiddleware,
and than one layer each: no extra task, stream or `send` wrapper per concern). The metrics are
the one other layer (`app/observability/http_metrics.py`), so that `METRICS_ENABLED=false`
removes them whole."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Iterable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.fields import CONTROL_CHARACTERS
from app.logging import RequestLogContext, request_log_context
from app.middlewares.security_headers import DocsPaths, with_security_headers
from app.observability.routes import RouteTemplates

access_logger = logging.getLogger("app.access")
error_logger = logging.getLogger("app.errors")

REQUEST_ID_HEADER = b"x-request-id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
INTERNAL_ERROR_BODY = json.dumps({"detail": "Internal server error"}).encode()
INTERNAL_ERROR_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(INTERNAL_ERROR_BODY)).encode()),
    ],
}
# The client closed the connection before any answer (nginx's code; not an HTTP status).
CLIENT_CLOSED_REQUEST = 499
ESCAPED_IN_LOGS = re.compile(f"[{CONTROL_CHARACTERS}]")


def loggable_path(scope: Scope) -> str:
    """The decoded path, with control characters escaped: `/%0d%0aGET /admin` must not forge a
    second log line."""
    path: str = scope["path"]
    if ESCAPED_IN_LOGS.search(path) is None:
        return path
    return ESCAPED_IN_LOGS.sub(lambda match: f"\\x{ord(match.group()):02x}", path)


def incoming_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate: str = value.decode("latin-1")
            if SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    # Unique, not secret: 128 random bits without a system call per request (uuid4 makes one).
    return f"{random.getrandbits(128):032x}"


class RequestContextMiddleware:
    """Every request the client still waits for gets an answer: the app's, or a last-resort
    500 when the app raised or returned without one. A request that ends without an answer is
    one whose client left first: logged as 499, whatever status the app meant to send
    (`MetricsMiddleware` counts it so too). The client left when `receive` says so, or when a
    `send` raises `ClientDisconnect` (the server found the connection gone: app/server.py)."""

    def __init__(
        self,
        app: ASGIApp,
        route_templates: RouteTemplates,
        docs_paths: Iterable[str | None] = (),
    ) -> None:
        self.app = app
        self.route_templates = route_templates
        self.docs_paths = DocsPaths(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = incoming_request_id(scope)
        context = RequestLogContext(request_id)
        token = request_log_context.set(context)
        request_id_header = (REQUEST_ID_HEADER, request_id.encode())
        status = 500
        started = False
        answered = False
        client_left = False
        start = time.perf_counter()

        async def receive_watching_disconnect() -> Message:
            nonlocal client_left
            message = await receive()
            if message["type"] == "http.disconnect":
                client_left = True
            return message

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, started, answered
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [*message.get("headers", ()), request_id_header]
                message["headers"] = with_security_headers(headers, scope["path"], self.docs_paths)
            await send(message)
            answered = message["type"] == "http.response.body" and not message.get("more_body")

        try:
            try:
                await self.app(scope, receive_watching_disconnect, send_with_request_id)
            except ClientDisconnect:
                client_left = True  # while its body was read, or when its answer was sent
            except Exception:
                if started or not client_left:
                    error_logger.exception(
                        "Unhandled error on %s %s", scope["method"], loggable_path(scope)
                    )
            if not started and not client_left:
                await send_with_request_id(dict(INTERNAL_ERROR_START))
                await send({"type": "http.response.body", "body": INTERNAL_ERROR_BODY})
        finally:
            if client_left and not answered:
                # Nobody to answer: not a server error (nginx's 499, client closed request).
                status = CLIENT_CLOSED_REQUEST
            duration_ms = (time.perf_counter() - start) * 1000
            path = loggable_path(scope)
            # The path only: query strings may carry tokens.
            access_logger.info(
                "%s %s %d %.1fms rid=%s",
                scope["method"],
                path,
                status,
                duration_ms,
                request_id,
                extra={
                    "method": scope["method"],
                    "route": self.route_templates.of(scope),
                    "path": path,
                    "status": status,
                    "duration_ms": round(duration_ms, 1),
                },
            )
            request_log_context.reset(token)
