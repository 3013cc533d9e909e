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


# --- What bodies may cost the process: a shared budget (503) and a deadline (408) ---


@asynccontextmanager
async def limited_app(database_url: str, **settings: Any) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(database_url, **settings))
    async with application.router.lifespan_context(application):
        yield application


async def call(
    application: FastAPI, receive: Callable[[], Awaitable[dict[str, Any]]], length: int | None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One PATCH /api/v1/users/me over raw ASGI, its body from `receive`; the answer."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PATCH",
        "scheme": "http",
        "path": "/api/v1/users/me",
        "raw_path": b"/api/v1/users/me",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
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
) -> Callable[[], Any]:
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


async def test_bodies_past_the_shared_budget_are_503_at_once(database_url: str) -> None:
    async with limited_app(database_url, MAX_INFLIGHT_BODY_BYTES=600_000) as application:
        gate, reading = asyncio.Event(), asyncio.Event()
        parts = body_in_parts(b"{}" + b" " * 249_998, b" " * 250_000, gate=gate, reading=reading)
        first = asyncio.create_task(call(application, parts, 500_000))
        await reading.wait()  # its declared length is taken from the budget by now

        async def never_read() -> dict[str, Any]:
            raise AssertionError("a refused body is not read")

        # The declared length does not fit beside the first body: refused before reading.
        status, headers, body = await call(application, never_read, 200_000)
        assert status == 503, body
        assert headers[b"retry-after"] == b"1"
        assert json.loads(body) == {
            "detail": "Too many request bodies in progress, try again shortly"
        }
        # A chunked body (no length) is counted chunk by chunk, and refused the same way.
        status, _, _ = await call(application, body_in_parts(b" " * 60_000, b" " * 60_000), None)
        assert status == 503
        # Small bodies still fit.
        status, _, _ = await call(application, body_in_parts(b"{}"), 2)
        assert status == 401
        gate.set()
        assert (await first)[0] == 401  # the first one completes (it is not signed in)
        # Its share is given back: the same request as before now gets through.
        status, _, _ = await call(application, body_in_parts(b"{}" + b" " * 199_998), 200_000)
        assert status == 401


async def test_a_body_that_does_not_arrive_in_time_is_408(database_url: str) -> None:
    async with limited_app(database_url, BODY_TIMEOUT_SECONDS=0.5) as application:
        stalled = body_in_parts(b'{"full_name": ', b'"x"}', gate=asyncio.Event())
        started = time.monotonic()
        status, headers, body = await call(application, stalled, 18)
        assert status == 408, body
        assert headers[b"connection"] == b"close"
        assert 0.4 < time.monotonic() - started < 10

        async def trickle() -> dict[str, Any]:
            """A byte every 0.1 s, never done: the deadline is for the whole body."""
            await asyncio.sleep(0.1)
            return {"type": "http.request", "body": b" ", "more_body": True}

        status, _, _ = await call(application, trickle, None)
        assert status == 408
        # And nothing of it is still counted.
        status, _, _ = await call(application, body_in_parts(b"{}"), 2)
        assert status == 401
