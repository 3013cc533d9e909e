"""A request leaves no reference cycles behind, through the HTTP protocol `manage.py run` serves
with: the served process collects young objects rarely (app/server.py), so a cycle per request
keeps every request's objects alive until the next collection, and costs time on every request
(app/http_protocol.py says how much). A cycle made by the protocol, a middleware, a dependency
or a service shows here as garbage the collector finds."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from app.http_protocol import HttpProtocol
from tests.conftest import AuthHeaders, UserFactory

REQUESTS = 100


@contextmanager
def collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def garbage_per_request(port: int, method: str, path: str, headers: dict[str, str]) -> float:
    """Objects the collector finds unreachable after `REQUESTS` requests on one connection, per
    request (the client, raw asyncio streams, makes none)."""
    body = b""
    if method in {"POST", "PATCH"}:
        fields = {"title", "body"} if method == "POST" else {"full_name"}
        body = json.dumps(dict.fromkeys(fields, "x")).encode()
        headers = {**headers, "Content-Type": "application/json"}
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (head + "\r\n").encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def one() -> None:
        writer.write(request)
        answer_head = await reader.readuntil(b"\r\n\r\n")
        status = int(answer_head.split(b" ", 2)[1])
        assert status in {200, 201}, (method, path, answer_head)
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", answer_head)
        assert length is not None, answer_head
        await reader.readexactly(int(length.group(1)))

    try:
        for _ in range(10):  # first-use caches (statements, validators) are not garbage
            await one()
        gc.collect()
        with collector_off():
            for _ in range(REQUESTS):
                await one()
            return gc.collect() / REQUESTS
    finally:
        writer.close()
        await writer.wait_closed()


async def test_requests_leave_no_reference_cycles(
    app: FastAPI, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user(is_superuser=True)
    config = uvicorn.Config(
        app, http=HttpProtocol, lifespan="off", access_log=False, log_level="warning"
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # as `Server.serve` does ("off": nothing)
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only then (otherwise 40 ms a request, Nagle).
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    await server.startup(sockets=[listening])
    try:
        garbage = {
            f"{method} {path}": await garbage_per_request(port, method, path, headers)
            for method, path, headers in [
                ("GET", "/", {}),
                ("GET", "/api/v1/users/me", auth(user)),
                ("GET", f"/api/v1/users/{user.id}", auth(user)),
                ("GET", "/api/v1/posts/?limit=20", auth(user)),
                ("PATCH", "/api/v1/users/me", auth(user)),
                ("POST", "/api/v1/posts/", auth(user)),
            ]
        }
    finally:
        await server.shutdown(sockets=[listening])
    # Before app/http_protocol.py held its `send` outside uvicorn's cycle: 24 a request.
    assert all(count < 1 for count in garbage.values()), garbage
