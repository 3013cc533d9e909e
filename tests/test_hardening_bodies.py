"""Bodies that used to break the error answers (issue 7, section 1): JSON's non-finite numbers.

Python's `json` (and so FastAPI) reads `NaN`, `Infinity` and `-Infinity` although JSON has no
such values. The 422 echoed them back and its encoder refused them: a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.supabase.fake import FakeSupabase
from tests.conftest import AuthHeaders, UserFactory, make_settings

USERS = "/api/v1/users/"
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity"]


def assert_strict_json_422(response: httpx.Response) -> list[dict[str, object]]:
    """A 422 whose body strict JSON parsers read (no NaN/Infinity tokens anywhere)."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"

    def refuse(token: str) -> float:
        raise AssertionError(f"non-finite number {token} in {response.text}")

    detail: list[dict[str, object]] = json.loads(response.text, parse_constant=refuse)["detail"]
    assert detail
    return detail


@pytest.mark.parametrize("number", NON_FINITE)
async def test_non_finite_number_in_a_field_is_422(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, number: bytes
) -> None:
    user = await make_user(full_name="Before")
    headers = {**auth(user), "content-type": "application/json"}
    for field in (b"full_name", b"email", b"is_active"):
        raw = b'{"' + field + b'": ' + number + b"}"
        detail = assert_strict_json_422(
            await client.patch(USERS + "me", headers=headers, content=raw)
        )
        # The value is named as it was sent, as text.
        assert detail[0]["input"] == number.decode(), detail
    admin = await make_user(is_superuser=True)
    admin_headers = {**auth(admin), "content-type": "application/json"}
    raw = b'{"email": "n@example.com", "full_name": ' + number + b"}"
    assert_strict_json_422(await client.post(USERS, headers=admin_headers, content=raw))
    unchanged = await client.get(USERS + "me", headers=auth(user))
    assert unchanged.json()["full_name"] == "Before"


@pytest.mark.parametrize("number", NON_FINITE)
async def test_bare_non_finite_body_is_422(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, number: bytes
) -> None:
    user = await make_user()
    headers = {**auth(user), "content-type": "application/json"}
    for raw in (number, b"[" + number + b", 1]", b'{"full_name": [' + number + b"]}"):
        assert_strict_json_422(await client.patch(USERS + "me", headers=headers, content=raw))
    assert_strict_json_422(await client.post("/api/v1/posts/", headers=headers, content=number))


def test_the_rendering_never_holds_a_non_finite_number() -> None:
    """The handler's encoder on its own: whatever the error holds, the body is strict JSON."""
    from app.exception_handlers import json_safe

    assert json_safe(math.nan) == "NaN"
    assert json_safe(math.inf) == "Infinity"
    assert json_safe(-math.inf) == "-Infinity"
    assert json_safe(1.5) == 1.5


# --- What bodies may cost the process: the gate, a shared budget with a share per client (503),
# a deadline and a minimum rate (408), a lane of its own for the webhook (issue 13) ---

WEBHOOK_SECRET = "webhook-secret-that-is-long-enough-0123456789"


@asynccontextmanager
async def limited_app(database_url: str, **settings: Any) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(database_url, **settings))
    async with application.router.lifespan_context(application):
        yield application


Receive = Callable[[], Awaitable[dict[str, Any]]]


async def call(
    application: FastAPI,
    receive: Receive,
    length: int | None,
    *,
    headers: dict[str, str] | None = None,
    path: str = "/api/v1/users/me",
    method: str = "PATCH",
    client: str = "127.0.0.1",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request over raw ASGI (PATCH /api/v1/users/me unless told), its body from `receive`,
    from the address `client`; the answer."""
    raw_headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if length is not None:
        raw_headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": (client, 50000),
        "server": ("testserver", 80),
    }
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def body_in_parts(
    *parts: bytes, gate: asyncio.Event | None = None, reading: asyncio.Event | None = None
) -> Receive:
    """A client that sends `parts` one per receive(), waiting for `gate` before the last;
    `reading` is set when the app first asks for the body."""
    pending = list(parts)

    async def receive() -> dict[str, Any]:
        if reading is not None:
            reading.set()
        if not pending:
            await asyncio.Event().wait()  # the body is done: wait for a disconnect forever
        if len(pending) == 1 and gate is not None:
            await gate.wait()
        return {"type": "http.request", "body": pending.pop(0), "more_body": len(pending) > 0}

    return receive


async def never_read() -> dict[str, Any]:
    raise AssertionError("this body must not be read")


def padded(size: int) -> bytes:
    return b"{}" + b" " * (size - 2)


class HeldBody:
    """A PATCH whose declared body arrives only when `release()` is called: it holds its length
    of the budget until then."""

    def __init__(self, application: FastAPI, size: int, **options: Any) -> None:
        self.gate, self.reading = asyncio.Event(), asyncio.Event()
        half = size // 2
        parts = body_in_parts(
            padded(half), b" " * (size - half), gate=self.gate, reading=self.reading
        )
        self.task = asyncio.create_task(call(application, parts, size, **options))

    async def held(self) -> HeldBody:
        await self.reading.wait()  # its declared length is taken from the budget by now
        return self

    async def release(self) -> int:
        self.gate.set()
        return (await self.task)[0]


async def test_no_body_is_read_or_held_for_a_request_that_cannot_succeed(
    database_url: str, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """Before: FastAPI read the body before the token was checked, so an anonymous client held
    room in the budget for each body it declared and never sent; 32 such connections filled it.
    Now each of these is answered at once, from its headers, and the budget stays empty."""
    user = await make_user()
    forged = auth(user)["Authorization"][:-4] + "AAAA"
    settings = {"SUPABASE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    async with limited_app(database_url, **settings) as application:
        cases = [
            ({}, "/api/v1/users/me", "PATCH", 401),
            ({"Authorization": "Bearer not-a-token"}, "/api/v1/posts/", "POST", 401),
            ({"Authorization": forged}, "/api/v1/posts/", "POST", 401),
            ({"Authorization": "Basic dXNlcjpwdw=="}, "/api/v1/posts/", "POST", 401),
            ({}, "/no/such/path", "POST", 404),
            ({}, "/api/v1/users/me", "PUT", 405),  # a route, but not for this method
            ({"Authorization": "Bearer wrong-secret"}, "/auth/supabase/webhook", "POST", 401),
        ]
        for headers, path, method, expected in cases:
            started = time.monotonic()
            status, answer_headers, body = await call(
                application, never_read, 1_048_576, headers=headers, path=path, method=method
            )
            assert status == expected, (path, method, body)
            # The connection is left to the server, which discards the body if it comes and
            # closes the connection once idle (a client reconnecting at once would be a flood).
            assert b"connection" not in answer_headers, (path, method)
            assert time.monotonic() - started < 1.0
            if expected == 401:
                assert answer_headers[b"www-authenticate"].startswith(b"Bearer"), path
            assert "detail" in json.loads(body)
        middleware = limits_of(application)
        assert middleware.body_budget.held == 0
    async with limited_app(database_url) as application:  # no SUPABASE_WEBHOOK_SECRET: 404
        status, _, _ = await call(
            application,
            never_read,
            1000,
            headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"},
            path="/auth/supabase/webhook",
            method="POST",
        )
        assert status == 404


async def test_the_gate_remembers_a_route_only_for_a_path_without_ids(database_url: str) -> None:
    """The gate remembers the route of a fixed path (not walked again: same answers), never one
    with an id in it: ids a client makes up make nothing grow."""
    async with limited_app(database_url) as application:
        for n in range(1, 51):
            for path in ("/api/v1/users/me", f"/api/v1/posts/{n}", "/no/such/path"):
                status, _, _ = await call(application, never_read, 10, path=path, method="PATCH")
                assert status == (404 if path == "/no/such/path" else 401), path
        gate = limits_of(application).gate
        assert list(gate._fixed) == [("PATCH", "/api/v1/users/me")]


def limits_of(application: FastAPI) -> Any:
    """The app's RequestLimitsMiddleware instance (built on the first request)."""
    from app.middlewares.request_limits import RequestLimitsMiddleware

    app: Any = application.middleware_stack
    while not isinstance(app, RequestLimitsMiddleware):
        app = app.app
    return app


async def test_bodies_past_the_shared_budget_are_503_at_once(
    database_url: str, make_user: UserFactory, auth: AuthHeaders
) -> None:
    users = [await make_user() for _ in range(3)]
    settings = {"MAX_INFLIGHT_BODY_BYTES": 600_000, "MAX_CLIENT_INFLIGHT_BODY_BYTES": 600_000}
    async with limited_app(database_url, **settings) as application:
        first = await HeldBody(application, 500_000, headers=auth(users[0])).held()
        # The declared length does not fit beside the first body: refused before reading.
        status, headers, body = await call(
            application, never_read, 200_000, headers=auth(users[1]), client="127.0.0.2"
        )
        assert status == 503, body
        assert headers[b"retry-after"] == b"1"
        assert json.loads(body) == {
            "detail": "Too many request bodies in progress, try again shortly"
        }
        # A chunked body (no length) is counted chunk by chunk, and refused the same way.
        chunked = body_in_parts(b" " * 60_000, b" " * 60_000)
        status, _, _ = await call(application, chunked, None, headers=auth(users[2]))
        assert status == 503
        # Small bodies still fit.
        status, _, _ = await call(application, body_in_parts(b"{}"), 2, headers=auth(users[1]))
        assert status == 200
        assert await first.release() == 200  # the first one completes
        # Its share is given back: the same request as before now gets through.
        again = body_in_parts(padded(200_000))
        status, _, _ = await call(application, again, 200_000, headers=auth(users[1]))
        assert status == 200


async def test_one_client_holds_only_its_share(
    database_url: str, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """Before: one address could take the whole budget. Now an address (and a signed-in user,
    from any address) holds at most MAX_CLIENT_INFLIGHT_BODY_BYTES; the rest stays for others,
    and the webhook has a lane of its own that even a full budget leaves free."""
    attacker, other = await make_user(), await make_user()
    settings = {
        "MAX_BODY_BYTES": 100_000,
        "MAX_CLIENT_INFLIGHT_BODY_BYTES": 150_000,
        "MAX_INFLIGHT_BODY_BYTES": 400_000,
        "SUPABASE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    async with limited_app(database_url, **settings) as application:
        held = await HeldBody(application, 100_000, headers=auth(attacker)).held()
        # The same address, another user: past the address's share.
        status, _, _ = await call(application, never_read, 60_000, headers=auth(other))
        assert status == 503
        # The same user from another address: past the user's share.
        status, _, _ = await call(
            application, never_read, 60_000, headers=auth(attacker), client="127.0.0.9"
        )
        assert status == 503
        # Anyone else still has room.
        fits = body_in_parts(padded(60_000))
        status, _, body = await call(
            application, fits, 60_000, headers=auth(other), client="127.0.0.2"
        )
        assert status == 200, body
        # IPv6 counts per /64: another address of the same network shares the share.
        six = await HeldBody(application, 100_000, headers=auth(other), client="2001:db8::1").held()
        status, _, _ = await call(
            application, never_read, 60_000, headers=auth(attacker), client="2001:db8::2"
        )
        assert status == 503
        # Fill the shared budget from many addresses: the webhook still gets through.
        fillers = [
            await HeldBody(application, 100_000, headers=auth(u), client=f"127.0.1.{n}").held()
            for n, u in enumerate([await make_user() for _ in range(2)])
        ]
        status, _, _ = await call(
            application, never_read, 1000, headers=auth(await make_user()), client="127.0.2.1"
        )
        assert status == 503  # the shared budget is full
        fake = FakeSupabase()
        event = json.dumps(fake.update_metadata(fake.create_user("x@example.com"), a=1)).encode()
        status, _, body = await call(
            application,
            body_in_parts(event),
            len(event),
            headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"},
            path="/auth/supabase/webhook",
            method="POST",
            client="127.0.3.1",
        )
        assert status == 204, body  # not refused for room
        for body_holder in (held, six, *fillers):
            assert await body_holder.release() == 200
        assert limits_of(application).body_budget.held == 0
        assert limits_of(application).body_budget.held_by == {}


async def test_a_body_that_does_not_arrive_in_time_is_408(
    database_url: str, make_user: UserFactory, auth: AuthHeaders
) -> None:
    headers = auth(await make_user())
    async with limited_app(database_url, BODY_TIMEOUT_SECONDS=0.5) as application:
        stalled = body_in_parts(b'{"full_name": ', b'"x"}', gate=asyncio.Event())
        started = time.monotonic()
        status, answer_headers, body = await call(application, stalled, 18, headers=headers)
        assert status == 408, body
        assert json.loads(body)["detail"] == "Request body not received within 0.5 s"
        assert answer_headers[b"connection"] == b"close"
        assert 0.4 < time.monotonic() - started < 10

        async def trickle() -> dict[str, Any]:
            """A byte every 0.1 s, never done: the deadline is for the whole body."""
            await asyncio.sleep(0.1)
            return {"type": "http.request", "body": b" ", "more_body": True}

        status, _, _ = await call(application, trickle, None, headers=headers)
        assert status == 408
        # And nothing of it is still counted.
        status, _, _ = await call(application, body_in_parts(b"{}"), 2, headers=headers)
        assert status == 200


async def test_a_body_slower_than_the_minimum_rate_is_408_after_the_grace(
    database_url: str, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """Before: a body could take BODY_TIMEOUT_SECONDS (20 s) whatever its pace. Now, after
    BODY_RATE_GRACE_SECONDS, it must average MIN_BODY_DATA_RATE bytes/s."""
    headers = auth(await make_user())
    settings = {"BODY_RATE_GRACE_SECONDS": 0.3, "MIN_BODY_DATA_RATE": 100}
    async with limited_app(database_url, **settings) as application:

        async def trickle() -> dict[str, Any]:
            await asyncio.sleep(0.1)  # 10 bytes/s
            return {"type": "http.request", "body": b" ", "more_body": True}

        started = time.monotonic()
        status, _, body = await call(application, trickle, None, headers=headers)
        assert status == 408
        assert json.loads(body)["detail"] == "Request body arrived slower than 100 bytes/s"
        assert time.monotonic() - started < 2.0  # not the 20 s total

        sent = 0

        async def brisk() -> dict[str, Any]:
            """2,000 bytes/s for 1 s: slow, but above the rate."""
            nonlocal sent
            await asyncio.sleep(0.05)
            sent += 100
            chunk = b"{}" + b" " * 98 if sent == 100 else b" " * 100
            return {"type": "http.request", "body": chunk, "more_body": sent < 2000}

        status, _, body = await call(application, brisk, 2000, headers=headers)
        assert status == 200, body
