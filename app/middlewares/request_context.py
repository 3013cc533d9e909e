"""Request id, security headers, access log, metrics, CORS and last-resort error handling, as
one pure ASGI middleware: everything that wraps each answer, in one layer (cheaper than
BaseHTTPMiddleware, and than one layer each: no extra call, `send` wrapper or header scan per
concern; docs/performance.md says what each layer cost).

- Metrics (`app/observability/http_metrics.py`): recorded here when `METRICS_ENABLED`; without
  them a request pays nothing for metrics.
- CORS: Starlette's `CORSMiddleware` answers every request that carries an `Origin` header
  (preflights, cross-origin requests). A request without one is not a CORS request: all that
  middleware would do is add `Vary: Origin` to the answer (caches must not give it to a
  cross-origin request), so that is what this layer does, without the detour."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.fields import CONTROL_CHARACTERS
from app.logging import AccessRecord, RequestLogContext, request_log_context
from app.middlewares.security_headers import DocsPaths, with_security_headers
from app.observability.http_metrics import HttpMetrics
from app.observability.routes import RouteTemplates

access_logger = logging.getLogger("app.access")
error_logger = logging.getLogger("app.errors")

REQUEST_ID_HEADER = b"x-request-id"
ORIGIN_HEADER = b"origin"
VARY_HEADER = b"vary"
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
CLIENT_CLOSED_REQUEST = HttpMetrics.CLIENT_CLOSED_REQUEST
ESCAPED_IN_LOGS = re.compile(f"[{CONTROL_CHARACTERS}]")


def loggable_path(scope: Scope) -> str:
    """The decoded path, with control characters escaped: `/%0d%0aGET /admin` must not forge a
    second log line."""
    path: str = scope["path"]
    if ESCAPED_IN_LOGS.search(path) is None:
        return path
    return ESCAPED_IN_LOGS.sub(lambda match: f"\\x{ord(match.group()):02x}", path)


def read_headers(scope: Scope) -> tuple[str, bool]:
    """The request's id (the client's `X-Request-ID` when sane, a new one otherwise) and whether
    it carries an `Origin` header, in one pass over the headers."""
    request_id: str | None = None
    has_origin = False
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and request_id is None:
            candidate: str = value.decode("latin-1")
            request_id = candidate if SANE_REQUEST_ID.fullmatch(candidate) else ""
        elif name == ORIGIN_HEADER:
            has_origin = True
    # Unique, not secret: 128 random bits without a system call per request (uuid4 makes one).
    return request_id or f"{random.getrandbits(128):032x}", has_origin


def vary_on_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with `Origin` added to `Vary`, as `CORSMiddleware` does (one `Vary` header)."""
    varies = [value for name, value in headers if name.lower() == VARY_HEADER]
    if not varies:
        return [*headers, (VARY_HEADER, b"Origin")]
    others = [(name, value) for name, value in headers if name.lower() != VARY_HEADER]
    return [*others, (VARY_HEADER, b", ".join([*varies, b"Origin"]))]


class RequestContextMiddleware:
    """Every request the client still waits for gets an answer: the app's, or a last-resort
    500 when the app raised or returned without one. A request that ends without an answer is
    one whose client left first: logged as 499, whatever status the app meant to send, and
    counted so in the metrics when its answer could not even start. The client left when
    `receive` says so, or when a `send` raises `ClientDisconnect` (the server found the
    connection gone: app/http_protocol.py).

    `metrics`: where requests are counted (None: they are not). `cors`: `CORSMiddleware`'s
    options (None: no CORS handling at all)."""

    def __init__(
        self,
        app: ASGIApp,
        route_templates: RouteTemplates,
        docs_paths: Iterable[str | None] = (),
        metrics: HttpMetrics | None = None,
        cors: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.route_templates = route_templates
        self.docs_paths = DocsPaths(docs_paths)
        self.metrics = metrics
        self.cross_origin_app: ASGIApp | None = CORSMiddleware(app, **cors) if cors else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id, has_origin = read_headers(scope)
        context = RequestLogContext(request_id)
        token = request_log_context.set(context)
        request_id_header = (REQUEST_ID_HEADER, request_id.encode())
        app = self.app
        vary = False
        if self.cross_origin_app is not None:
            if has_origin:
                app = self.cross_origin_app
            else:
                vary = True
        status = 500
        started = False
        answered = False
        sent_status = CLIENT_CLOSED_REQUEST  # what the metrics count: the answer that started
        client_left = False
        if self.metrics is not None:
            self.metrics.start()
        start = time.perf_counter()

        async def receive_watching_disconnect() -> Message:
            nonlocal client_left
            message = await receive()
            if message["type"] == "http.disconnect":
                client_left = True
            return message

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, started, answered, sent_status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [*message.get("headers", ()), request_id_header]
                if vary:
                    headers = vary_on_origin(headers)
                message["headers"] = with_security_headers(headers, scope["path"], self.docs_paths)
                await send(message)  # raises when the connection is gone: then it stays 499
                sent_status = status
                return
            await send(message)
            answered = message["type"] == "http.response.body" and not message.get("more_body")

        try:
            try:
                await app(scope, receive_watching_disconnect, send_with_request_id)
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
            duration = time.perf_counter() - start
            route = self.route_templates.of(scope)
            if self.metrics is not None:
                # The status of the answer that started; none could: the client left first.
                self.metrics.record(scope["method"], route, sent_status, duration)
            if client_left and not answered:
                # Nobody to answer: not a server error (nginx's 499, client closed request).
                status = CLIENT_CLOSED_REQUEST
            self.log_access(scope, route, status, duration * 1000, request_id)
            request_log_context.reset(token)

    @staticmethod
    def log_access(scope: Scope, route: str, status: int, duration_ms: float, rid: str) -> None:
        """The access line (`AccessRecord`: made without `Logger.makeRecord`'s per-record work).
        The path only: query strings may carry tokens."""
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.handle(
                AccessRecord(scope["method"], route, loggable_path(scope), status, duration_ms, rid)
            )
