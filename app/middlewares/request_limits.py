"""Bounds on what a client may send: URL (414), header section (431), body (413), one
`Authorization` header at most (400), a path without control characters (404) and, when
configured, the `Host` it addresses (400), refused before the app parses any of it. And bounds on
what bodies may cost the process, so that no client can take it from the others:

- a body is read only for a request a route will serve, and only once the route's header checks
  passed (`body_gate.py`): an unknown path, or a route that needs a token sent without a valid
  one, costs nothing of the budget;
- all bodies being received or handled share one budget per process (503 past it), of which
  one client (an address, an IPv6 /64, a signed-in user) may hold only a small share;
- a body must keep arriving: at `MIN_BODY_DATA_RATE` on average after a grace period, and whole
  within `BODY_TIMEOUT_SECONDS` (408 otherwise);
- the Supabase webhook, once its secret is proven, has a lane of its own.

Uvicorn's default HTTP parser (httptools) puts no limit on URLs or headers: a client could send
megabytes of headers and the app would decode, match and log them. The server has already read
them by then, so a reverse proxy in front should refuse them first; this is the app's own bound.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.middlewares.body_gate import Admitted, BodyGate, Refused
from app.rate_limit.client import client_key

# The API's URLs are short (ids, limit, offset); 8 KiB is what most servers allow.
MAX_URL_BYTES = 8 * 1024
# Supabase's `sb-<ref>-auth-token` header holds a whole session (tokens and user): a few KiB,
# split over several headers past ~3 KiB each. 64 KiB leaves a wide margin.
MAX_HEADER_BYTES = 64 * 1024
# Methods whose bodies the app never reads: passed through untouched.
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Route patterns end in `$`, which also matches before a final newline: `/healthz\n` was
# /healthz. No path of this API holds a control character (a path parameter never may), so such
# a path names nothing: 404 before routing, for every route.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


# Seconds a client waits, after a 503 for a full body budget, before trying again.
BODY_BUDGET_RETRY_AFTER = 1


def json_error(
    status: int, detail: str, headers: Collection[tuple[bytes, bytes]] = (), *, close: bool = True
) -> tuple[Message, Message]:
    """A complete `{"detail": ...}` answer; `close`: one that closes the connection (the rest of
    the request may still be arriving, and will not be read)."""
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *([(b"connection", b"close")] if close else []),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyBudget:
    """The bytes of request bodies this process holds at once, over every request, and each
    holder's part of them: a body counts from its first byte (a declared one: its whole length)
    until its request is answered. Without it, 300 connections that each sent most of a 1 MiB
    body and stalled held 300 MiB, and the allocator kept most of it after they closed. Without
    the per-holder share, 32 such connections from one client left nothing to anyone else.
    (One event loop per process: no lock is needed.)"""

    def __init__(self, limit: int, share: int) -> None:
        self.limit = limit
        self.share = share
        self.held = 0
        self.held_by: dict[str, int] = {}

    def take(self, holders: Sequence[str], size: int) -> bool:
        if self.held + size > self.limit:
            return False
        if any(self.held_by.get(holder, 0) + size > self.share for holder in holders):
            return False
        self.held += size
        for holder in holders:
            self.held_by[holder] = self.held_by.get(holder, 0) + size
        return True

    def give_back(self, holders: Sequence[str], size: int) -> None:
        if not size:
            return
        self.held -= size
        for holder in holders:
            left = self.held_by[holder] - size
            if left:
                self.held_by[holder] = left
            else:
                del self.held_by[holder]


@dataclass(frozen=True)
class BodyLimits:
    """What bodies may cost: see the settings of the same names (`app/config.py`)."""

    max_body_bytes: int
    max_inflight_body_bytes: int
    max_client_inflight_body_bytes: int
    max_reserved_inflight_body_bytes: int
    body_timeout_seconds: float
    min_body_data_rate: int
    body_rate_grace_seconds: float


class RequestLimitsMiddleware:
    """A declared `Content-Length` over the body limit is refused at once. Otherwise, once the
    gate admits the request, the body is read here, up to the limit, before the app runs: a
    chunked body (no `Content-Length`) is refused with 413 as soon as it passes the limit, and
    the app never sees part of a body. (An error raised while FastAPI reads the body would become
    its generic 400.)"""

    def __init__(
        self,
        app: ASGIApp,
        body_limits: BodyLimits,
        body_gate: BodyGate,
        max_url_bytes: int = MAX_URL_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
        allowed_hosts: Collection[str] | None = None,
    ) -> None:
        self.app = app
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts or () if h != "*") or None
        self.limits = body_limits
        self.gate = body_gate
        share = max(body_limits.max_client_inflight_body_bytes, body_limits.max_body_bytes)
        self.body_budget = BodyBudget(body_limits.max_inflight_body_bytes, share)
        reserved = body_limits.max_reserved_inflight_body_bytes
        self.reserved_budget = BodyBudget(reserved, reserved)
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if len(raw_path) + len(scope.get("query_string", b"")) > self.max_url_bytes:
            await refuse(send, 414, f"URL longer than {self.max_url_bytes} bytes")
            return
        header_bytes = 0
        authorizations = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4  # as on the wire: "name: value\r\n"
            authorizations += name == b"authorization"
        if header_bytes > self.max_header_bytes:
            await refuse(send, 431, f"Request headers larger than {self.max_header_bytes} bytes")
            return
        if authorizations > 1:
            # Which one counts would depend on the reader (first or last): one rule, refused.
            await refuse(send, 400, "More than one Authorization header")
            return
        if CONTROL_CHARACTER.search(scope["path"]):
            await refuse(send, 404, "Not Found")
            return
        if self.allowed_hosts is not None and not self._host_allowed(scope):
            # Starlette builds redirects (trailing slash) from Host: never for a forged one.
            await refuse(send, 400, "Invalid host header")
            return
        if scope["method"] in BODILESS_METHODS:
            await self.app(scope, receive, send)
            return
        await self._with_bounded_body(scope, receive, send)

    @staticmethod
    async def _refuse_busy(send: Send, *, reading: bool) -> None:
        """503: no room for the body. Before any of it was read (`reading` False), the
        connection is left to linger (see `answer`); in the middle of one, it is closed."""
        retry_after = (b"retry-after", str(BODY_BUDGET_RETRY_AFTER).encode())
        busy = "Too many request bodies in progress, try again shortly"
        await (refuse if reading else answer)(send, 503, busy, [retry_after])

    def _host_allowed(self, scope: Scope) -> bool:
        assert self.allowed_hosts is not None
        host = next((v for n, v in scope["headers"] if n == b"host"), b"").decode("latin-1")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.lower()
        return name in self.allowed_hosts or any(
            pattern.startswith("*.") and name.endswith(pattern[1:])
            for pattern in self.allowed_hosts
        )

    async def _with_bounded_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_body_bytes = self.limits.max_body_bytes
        too_large = f"Request body larger than {max_body_bytes} bytes"
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > max_body_bytes:
                    await refuse(send, 413, too_large)
                    return
                declared = int(value)
                break

        verdict = self.gate.judge(scope)
        if verdict is None:
            # No route serves it: the app answers (404, 405, a redirect) without the body.
            await self.app(scope, receive, send)
            return
        if isinstance(verdict, Refused):
            await answer(send, verdict.status, verdict.detail, verdict.headers)
            return
        await self._admitted(scope, receive, send, verdict, declared)

    async def _admitted(
        self, scope: Scope, receive: Receive, send: Send, verdict: Admitted, declared: int | None
    ) -> None:
        limits = self.limits
        max_body_bytes = limits.max_body_bytes
        too_large = f"Request body larger than {max_body_bytes} bytes"
        budget = self.reserved_budget if verdict.reserved_lane else self.body_budget
        client = scope.get("client")
        holders = (client_key(client[0] if client else None), *verdict.holders)
        # A declared body takes its whole length from the budget before anything is read, so a
        # full budget is answered at once; a chunked one takes each chunk as it comes.
        held = 0
        if declared is not None:
            if not budget.take(holders, declared):
                await self._refuse_busy(send, reading=False)
                return
            held = declared
        try:
            chunks: list[bytes] = []
            received = 0
            loop = asyncio.get_running_loop()
            started = loop.time()
            deadline = started + limits.body_timeout_seconds
            while True:
                # Past the grace period the body must have come at MIN_BODY_DATA_RATE on average
                # (so the next byte is due by then), and whole by the deadline.
                due = started + max(
                    limits.body_rate_grace_seconds, (received + 1) / limits.min_body_data_rate
                )
                try:
                    message = await receive_by(receive, min(due, deadline))
                except asyncio.TimeoutError:
                    await refuse(send, 408, self._too_slow(due <= deadline))
                    return
                if message["type"] != "http.request":
                    return  # the client went away before sending the whole body
                chunk: bytes = message.get("body", b"")
                received += len(chunk)
                if received > max_body_bytes:
                    await refuse(send, 413, too_large)
                    return
                if declared is None:
                    if not budget.take(holders, len(chunk)):
                        await self._refuse_busy(send, reading=True)
                        return
                    held += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break

            body = b"".join(chunks)
            chunks.clear()
            await self.app(scope, replay(body, receive), send)
        finally:
            budget.give_back(holders, held)

    def _too_slow(self, by_rate: bool) -> str:
        if by_rate:
            return f"Request body arrived slower than {self.limits.min_body_data_rate} bytes/s"
        return f"Request body not received within {self.limits.body_timeout_seconds:g} s"


if sys.version_info >= (3, 11):

    async def receive_by(receive: Receive, when: float) -> Message:
        """The next message, or `asyncio.TimeoutError` at loop time `when` (a timer, not a task:
        a third of `wait_for`'s cost, paid on every message of every body)."""
        async with asyncio.timeout_at(when):
            return await receive()

else:

    async def receive_by(receive: Receive, when: float) -> Message:
        return await asyncio.wait_for(receive(), when - asyncio.get_running_loop().time())


def replay(body: bytes, receive: Receive | None) -> Receive:
    """A `receive` that gives the app `body` (already read) as one message, then what `receive`
    gives (after the body: the disconnect, as servers do), or a disconnect when there is none."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if receive is None:
            return {"type": "http.disconnect"}
        return await receive()

    return receive_again


async def refuse(
    send: Send, status: int, detail: str, headers: Collection[tuple[bytes, bytes]] = ()
) -> None:
    """Answer and close: for a request whose body is too large or too slow to wait for."""
    start, body = json_error(status, detail, headers)
    await send(start)
    await send(body)


async def answer(
    send: Send, status: int, detail: str, headers: Collection[tuple[bytes, bytes]] = ()
) -> None:
    """Answer a request before its body, leaving the connection to the server: Uvicorn discards
    the body if it comes, and closes the connection when it has been idle for its keep-alive
    timeout (5 s), as nginx's lingering close does. A client that declared a body and sends
    nothing is thus held for seconds rather than closed at once: 200 such connections
    reconnecting the moment they are closed would be a request flood."""
    start, body = json_error(status, detail, headers, close=False)
    await send(start)
    await send(body)
