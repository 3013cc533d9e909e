"""A client that leaves before any answer is logged and counted as 499 (client closed request),
not as a server error; a real server error stays 500 in the log and the metrics."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from tests.conftest import asgi_client, make_settings
from tests.processes import RunningServer, running_server
from tests.prometheus import MetricValues
from tests.tokens import token_for

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

DEADLINE = 30.0


def send_half_a_body_and_leave(port: int, request_id: str, token: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/posts/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
            + f"X-Request-ID: {request_id}\r\n\r\n".encode()
            + b'{"title": "'
            + b"x" * 100
        )


def access_line(server: RunningServer, request_id: str) -> str:
    deadline = time.monotonic() + DEADLINE
    while True:
        lines = [line for line in server.text().splitlines() if f"rid={request_id}" in line]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.05)


def test_abandoned_uploads_are_499_not_500(sqlite_url: str) -> None:
    # Signed in (any id: the token's signature is all that is checked before the body), else
    # the request is answered 401 from its headers and no body is awaited.
    token = token_for(make_settings(sqlite_url), 1, "leaver@example.com")
    with running_server(sqlite_url, kind=RunningServer) as server:
        for number in range(3):
            send_half_a_body_and_leave(server.port, f"abandoned-{number}", token)
        lines = [access_line(server, f"abandoned-{number}") for number in range(3)]
        metrics = MetricValues(httpx.get(f"{server.base_url}/metrics").text)
        log = server.text()
    assert all(" POST /api/v1/posts/ 499 " in line for line in lines), lines
    assert "Unhandled error" not in log and "Traceback" not in log
    posts = {"method": "POST", "route": "/api/v1/posts/"}
    assert metrics.get("megapolis_http_requests_total", **posts, status="499") == 3
    assert metrics.get("megapolis_http_requests_total", **posts, status="500") == 0


async def test_a_real_server_error_stays_500(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    application: FastAPI = create_app(make_settings(sqlite_url))

    @application.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    async with application.router.lifespan_context(application), asgi_client(application) as http:
        before = MetricValues((await http.get("/metrics")).text)
        logger = logging.getLogger("app")
        logger.addHandler(caplog.handler)
        try:
            answer = await http.get("/broken")
        finally:
            logger.removeHandler(caplog.handler)
        after = MetricValues((await http.get("/metrics")).text)
    assert answer.status_code == 500 and answer.json() == {"detail": "Internal server error"}
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("Unhandled error on GET /broken") for m in messages)
    assert any(m.startswith("GET /broken 500 ") for m in messages)
    labels = {"method": "GET", "route": "/broken", "status": "500"}
    assert (
        after.get("megapolis_http_requests_total", **labels)
        - before.get("megapolis_http_requests_total", **labels)
        == 1
    )
