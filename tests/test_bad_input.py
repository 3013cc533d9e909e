"""Bad input of every kind: oversized heads and bodies, bytes that are not UTF-8, broken
percent-encoding, odd numbers, unknown fields, JSON bombs, wrong content types, NUL bytes, lone
surrogates, emojis, duplicate keys. Never a 500; every error the app gives is JSON with `detail`.

Most tests go through the app over ASGI, on both databases. What lives in the HTTP server
(request heads, raw bytes on the wire, a body that never arrives) is tested against a real
`manage.py run` too.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from app.fields import MAX_INT_ID
from app.middlewares.request_limits import MAX_HEADER_BYTES, MAX_URL_BYTES
from tests.conftest import (
    AuthHeaders,
    UserFactory,
    make_settings,
    migrate,
    one_database,
)
from tests.processes import RunningServer, running_server
from tests.prometheus import MetricValues
from tests.tokens import token_for

USERS = "/api/v1/users/"
LIMIT = 1_048_576  # MAX_BODY_BYTES's default, which the test settings keep


def assert_json_error(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert detail
    return detail


async def user_count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    page = await client.get(USERS, headers=headers, params={"limit": 1})
    total: int = page.json()["total"]
    return total


@dataclass
class ASGIAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def call_asgi(
    app: FastAPI,
    method: str,
    raw_path: bytes,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body_messages: list[Message] | None = None,
) -> ASGIAnswer:
    """One request straight into the ASGI app, with bytes no HTTP client would send (httpx
    percent-encodes or refuses them). Without `body_messages`, reading the body fails the test."""
    sent: list[Message] = []
    pending = list(body_messages or [])

    async def receive() -> Message:
        if body_messages is None:
            pytest.fail("the app read a body that it should have refused unread")
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return ASGIAnswer(start["status"], response_headers, body)


# --- bodies over the limit --------------------------------------------------------------------


async def test_chunked_body_over_the_limit_is_413_not_400(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    headers = {**auth(admin), "content-type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "big@example.com", "full_name": "'
        for _ in range(3):
            yield b"x" * 500_000
        yield b'"}'

    response = await client.post(USERS, headers=headers, content=chunks())
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_json_error(response, 413)
    assert response.json() == {"detail": f"Request body larger than {LIMIT} bytes"}
    assert await user_count(client, auth(admin)) == 1


async def test_body_of_exactly_the_limit_and_chunked_small_bodies_get_through(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    headers = {**auth(admin), "content-type": "application/json"}
    document = b'{"email": "edge@example.com"}'
    padded = document[:-1] + b" " * (LIMIT - len(document)) + b"}"
    assert len(padded) == LIMIT
    response = await client.post(USERS, headers=headers, content=padded)
    assert response.status_code == 201, response.text

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b'{"email": ', b'"chunked@', b'example.com", ', b'"full_name": "C"}'):
            yield piece

    chunked = await client.post(USERS, headers=headers, content=pieces())
    assert chunked.status_code == 201, chunked.text
    assert chunked.json()["full_name"] == "C"


@one_database
async def test_declared_length_over_the_limit_is_refused_without_reading_the_body(
    app: FastAPI,
) -> None:
    for method in (b"POST", b"PATCH", b"DELETE"):
        answer = await call_asgi(
            app,
            method.decode(),
            USERS.encode() + (b"1" if method != b"POST" else b""),
            headers=[(b"content-length", str(LIMIT + 1).encode())],
        )
        assert answer.status == 413
        assert answer.headers["connection"] == "close"
        assert answer.json()["detail"].startswith("Request body larger than")


# --- request heads over the limit (ASGI; the real server below) ---------------------------------


@pytest.mark.parametrize("header", ["Authorization", "X-Request-ID", "Cookie", "X-Anything"])
@one_database
async def test_header_section_over_the_limit_is_431(client: httpx.AsyncClient, header: str) -> None:
    value = "Bearer " + "a" * 100_000 if header == "Authorization" else "a" * 100_000
    response = await client.get("/api/v1/users/me", headers={header: value})
    assert_json_error(response, 431)
    assert len(response.headers["x-request-id"]) == 32
    # Just under the limit is fine (and then it is an ordinary 401).
    small = "a" * (MAX_HEADER_BYTES // 2)
    assert (await client.get("/api/v1/users/me", headers={"X-Anything": small})).status_code == 401


@one_database
async def test_many_headers_count_towards_the_limit(client: httpx.AsyncClient) -> None:
    headers = [(f"x-h{i}", "v" * 20) for i in range(3000)]
    assert_json_error(await client.get("/", headers=headers), 431)


@one_database
async def test_url_over_the_limit_is_414(client: httpx.AsyncClient) -> None:
    assert_json_error(await client.get("/api/v1/users/", params={"x": "a" * MAX_URL_BYTES}), 414)
    assert_json_error(await client.get("/" + "a" * MAX_URL_BYTES), 414)


# --- bytes that are not text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"email": "\xff@example.com"}', b"\xc3\x28", b'{"email": "a@example.com", "\xfe": 1}'],
)
async def test_json_body_that_is_not_utf8_is_400(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, raw: bytes
) -> None:
    admin = await make_user(is_superuser=True)
    headers = {**auth(admin), "content-type": "application/json"}
    assert_json_error(await client.post(USERS, headers=headers, content=raw), 400)
    patched = await client.patch(USERS + "me", headers=headers, content=raw)
    assert_json_error(patched, 400)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": "\\ud800@example.com"}',
        b'{"email": "x@example.com", "full_name": "\\udfff"}',
        b'{"\\ud800": 1, "email": "y@example.com"}',
        b'{"email": "z@example.com", "full_name": "ok \\ud83d"}',
    ],
)
async def test_lone_surrogates_are_422_not_500(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, raw: bytes
) -> None:
    """`"\\ud800"` is valid JSON syntax but no character: echoing it back in the 422 used to
    fail to encode, a 500."""
    admin = await make_user(is_superuser=True)
    headers = {**auth(admin), "content-type": "application/json"}
    assert_json_error(await client.post(USERS, headers=headers, content=raw), 422)
    anonymous = {"content-type": "application/json"}
    assert_json_error(await client.post(USERS, headers=anonymous, content=raw), 401)
    assert await user_count(client, auth(admin)) == 1


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ],
)
async def test_body_with_another_content_type_is_422_even_when_not_utf8(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, content_type: str
) -> None:
    admin = await make_user(is_superuser=True)
    headers = {**auth(admin), "content-type": content_type}
    for raw in (b'{"email": "typed@example.com"}', b"email=typed%40example.com", b"\xff\xfe\x00"):
        if not content_type and raw.startswith(b"{"):
            continue  # without a content type FastAPI reads JSON: that one is a valid request
        response = await client.post(USERS, headers=headers, content=raw)
        assert_json_error(response, 422)  # the body is not read as JSON, so never a 400
    form = await client.post(USERS, headers=auth(admin), data={"email": "form@example.com"})
    assert_json_error(form, 422)
    assert await user_count(client, auth(admin)) == 1


@pytest.mark.parametrize(
    "path",
    [b"/api/v1/users/\xff\xfe", b"/api/v1/users/%ff", b"/api/v1/users/%zz", b"/api/v1/users/%"],
)
async def test_path_that_is_not_utf8_or_badly_percent_encoded(
    app: FastAPI, make_user: UserFactory, auth: AuthHeaders, path: bytes
) -> None:
    admin = await make_user(is_superuser=True)
    token = auth(admin)["Authorization"].encode()
    for method in ("GET", "PATCH", "DELETE"):
        answer = await call_asgi(
            app,
            method,
            path,
            headers=[(b"authorization", token), (b"content-type", b"application/json")],
            body_messages=[{"type": "http.request", "body": b"{}"}],
        )
        assert answer.status == 422, (method, path, answer.body)
        assert answer.json()["detail"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        (b"limit=\xff", 422),
        (b"limit=%ff", 422),
        (b"limit=%zz", 422),
        (b"limit=%", 422),
        (b"offset=%00", 422),
        (b"limit=5&%ff=%fe", 200),  # an unknown parameter, however encoded, is ignored
    ],
)
async def test_query_that_is_not_utf8_or_badly_percent_encoded(
    app: FastAPI, make_user: UserFactory, auth: AuthHeaders, query: bytes, status: int
) -> None:
    admin = await make_user(is_superuser=True)
    token = auth(admin)["Authorization"].encode()
    answer = await call_asgi(
        app, "GET", USERS.encode(), query=query, headers=[(b"authorization", token)]
    )
    assert answer.status == status, (query, answer.body)
    if status == 422:
        assert answer.json()["detail"][0]["type"] == "int_parsing"
    else:
        assert answer.json()["total"] == 1


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ("limit=1.5", 422),
        ("limit=1e2", 422),
        ("limit=", 422),
        ("limit=%D9%A5", 422),  # an Arabic-Indic digit five
        ("limit=true", 422),
        ("offset=10000", 200),
        ("offset=10001", 422),  # deeper: by cursor
        (f"offset={MAX_INT_ID + 1}", 422),
        ("offset=-0", 200),
        ("limit=1&limit=101", 422),  # the last one counts
        ("limit=101&limit=1", 200),
    ],
)
async def test_more_pagination_edges(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, params: str, status: int
) -> None:
    admin = await make_user(is_superuser=True)
    response = await client.get(f"{USERS}?{params}", headers=auth(admin))
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["total"] == 1


# --- unknown fields and mass assignment -----------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"id": 5},
        {"supabase_id": "00000000-0000-0000-0000-000000000000"},
        {"created_at": "2000-01-01T00:00:00Z"},
        {"updated_at": "2000-01-01T00:00:00Z"},
        {"email_confirmed_at": "2000-01-01T00:00:00Z"},
        {"role": "service_role"},
    ],
)
async def test_unknown_fields_are_422_and_change_nothing(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, extra: dict[str, Any]
) -> None:
    admin = await make_user(is_superuser=True)
    user = await make_user(full_name="Before")
    before = (await client.get(USERS + "me", headers=auth(user))).json()
    for path, caller in (
        (USERS + "me", user),
        (f"{USERS}{user.id}", user),
        (f"{USERS}{user.id}", admin),
    ):
        response = await client.patch(
            path, headers=auth(caller), json={"full_name": "After", **extra}
        )
        detail = assert_json_error(response, 422)
        assert detail[0]["type"] == "extra_forbidden"
    created = await client.post(
        USERS, headers=auth(admin), json={"email": "n@example.com", **extra}
    )
    assert_json_error(created, 422)
    assert (await client.get(USERS + "me", headers=auth(user))).json() == before
    assert await user_count(client, auth(admin)) == 2


async def test_validation_errors_are_bounded(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """A 1 MiB body of unknown keys is ~80k errors: the answer reports 20 and stays small."""
    admin = await make_user(is_superuser=True)
    keys = b", ".join(b'"k%d": 0' % i for i in range(80_000))
    body = b'{"email": "wide@example.com", ' + keys + b"}"
    assert len(body) < LIMIT
    # CPU time of this process (the app runs in it, over ASGI), not wall time: other processes
    # on a loaded machine do not count, a slow path in the app (say, quadratic) does.
    started = time.process_time()
    response = await client.post(
        USERS, headers={**auth(admin), "content-type": "application/json"}, content=body
    )
    detail = assert_json_error(response, 422)
    assert len(detail) == 20
    assert len(response.content) < 4096
    assert time.process_time() - started < 5
    long_name = {"email": "long@example.com", "full_name": "x" * 100_000}
    echoed = await client.post(USERS, headers=auth(admin), json=long_name)
    assert "input" not in assert_json_error(echoed, 422)[0]
    assert len(echoed.content) < 1024


# --- JSON bombs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "shape", "status"),
    [
        (100, "array", 422),
        (100, "object", 422),
        (900, "array", 422),
        (900, "object", 422),
        # Deeper than Python's recursion limit: "error parsing the body".
        (5_000, "array", 400),
        (5_000, "object", 400),
        (200_000, "array", 400),
        (200_000, "object", 413),  # `{"a":` 200,000 times is over the body limit
    ],
)
async def test_deeply_nested_json_is_4xx(
    client: httpx.AsyncClient,
    make_user: UserFactory,
    auth: AuthHeaders,
    depth: int,
    shape: str,
    status: int,
) -> None:
    admin = await make_user(is_superuser=True)
    opening, leaf, closing = (b"[", b"1", b"]") if shape == "array" else (b'{"a":', b"1", b"}")
    nested = opening * depth + leaf + closing * depth
    headers = {**auth(admin), "content-type": "application/json"}
    for body in (nested, b'{"email": "deep@example.com", "full_name": ' + nested + b"}"):
        response = await client.post(USERS, headers=headers, content=body)
        assert_json_error(response, status)
        assert len(response.content) < 4096
    assert await user_count(client, auth(admin)) == 1


async def test_duplicate_keys_the_last_one_wins(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    member = await make_user()
    headers = {**auth(admin), "content-type": "application/json"}
    raw = b'{"email": "first@example.com", "full_name": "A", "email": "second@example.com"}'
    response = await client.post(USERS, headers=headers, content=raw)
    assert response.status_code == 201
    assert response.json()["email"] == "second@example.com"
    # A duplicate cannot smuggle a privileged field past the check: it is there either way.
    sneaky = b'{"is_superuser": true, "full_name": "x", "is_superuser": null}'
    escalation = await client.patch(
        USERS + "me", headers={**auth(member), "content-type": "application/json"}, content=sneaky
    )
    assert_json_error(escalation, 403)


# --- text the databases must store, or refuse cleanly -------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"email": "nul@example.com", "full_name": "a\u0000b"},
        {"email": "nul@example.com", "full_name": "\u0000"},
        {"email": "tab@example.com", "full_name": "a\tb"},
        {"email": "esc@example.com", "full_name": "\u001b[31mred"},
        {"email": "c1@example.com", "full_name": "a\u0085b"},
        {"email": "n\u0000ul@example.com"},
        {"email": "nul@example.com\u0000"},
    ],
)
async def test_nul_and_control_characters_are_422_on_every_database(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, body: dict[str, str]
) -> None:
    """PostgreSQL refuses NUL in text (that was a 500); the API refuses it, and other control
    characters, before the database sees them — the same answer on SQLite."""
    admin = await make_user(is_superuser=True)
    assert_json_error(await client.post(USERS, headers=auth(admin), json=body), 422)
    patched = await client.patch(USERS + "me", headers=auth(admin), json=body)
    assert_json_error(patched, 422)
    assert (await client.get(USERS + "me", headers=auth(admin))).json()["full_name"] is None


@pytest.mark.parametrize(
    "name",
    [
        "😀" * 255,  # astral characters: 4 bytes in UTF-8, 2 UTF-16 units, 1 character
        "👩‍👩‍👧‍👦 family",  # zero-width joiners
        "e\u0301" * 127,  # combining accents
        "مرحبا evil",  # right-to-left text
        "𝕳𝖊𝖑𝖑𝖔 " + "中" * 249,
        "\ufeffBOM",
    ],
)
async def test_unicode_names_round_trip(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, name: str
) -> None:
    admin = await make_user(is_superuser=True)
    created = await client.post(
        USERS, headers=auth(admin), json={"email": "u@example.com", "full_name": name}
    )
    assert created.status_code == 201, created.text
    fetched = await client.get(f"{USERS}{created.json()['id']}", headers=auth(admin))
    assert fetched.json()["full_name"] == name
    patched = await client.patch(USERS + "me", headers=auth(admin), json={"full_name": name})
    assert patched.json()["full_name"] == name


# Contract, "Hostile clients and lost events": bidirectional controls, line and paragraph
# separators, and text that is only invisible characters.
NOT_ONE_LINE = [
    "\u200b",  # a title of only a zero-width space
    "\u200b\u200c\u200d\u2060\ufeff \t\u3000",
    "invoice\u202egnp.exe",  # right-to-left override
    "\u202aembedded\u202c",
    "isolate \u2066x\u2069",
    "one\u2028two",
    "one\u2029two",
]


async def test_one_line_fields_refuse_bidi_controls_separators_and_invisible_text(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(full_name="Kept", is_superuser=True)
    for text in NOT_ONE_LINE:
        for method, path, body in [
            ("PATCH", USERS + "me", {"full_name": text}),
            ("POST", USERS, {"email": "n@example.com", "full_name": text}),
            ("POST", "/api/v1/posts/", {"title": text}),
        ]:
            response = await client.request(method, path, headers=auth(admin), json=body)
            assert_json_error(response, 422)
    assert (await client.get(USERS + "me", headers=auth(admin))).json()["full_name"] == "Kept"
    listed = await client.get("/api/v1/posts/", headers=auth(admin))
    assert listed.json()["items"] == []


async def test_names_are_limited_in_characters_not_bytes(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    too_long = {"email": "l@example.com", "full_name": "😀" * 256}
    assert_json_error(await client.post(USERS, headers=auth(admin), json=too_long), 422)


# --- a real server -------------------------------------------------------------------------------


class Server(RunningServer):
    authorization = b""  # an admin's `Authorization` header value, set by the fixture

    def exchange(self, request: bytes, timeout: float = 10.0) -> bytes:
        """Send raw bytes, return everything the server answers until it closes or one full
        answer (by Content-Length) has arrived."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            # The server may answer and close before taking everything.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(request)
            received = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
                head, _, body = received.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
            return received

    def alive(self) -> bool:
        answer = self.exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return answer.startswith(b"HTTP/1.1 200 ")


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> Any:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`manage.py run` (uvicorn as in production) on a free port, with its own SQLite file."""
    path = tmp_path_factory.mktemp("served") / "db.sqlite"
    database_url = f"sqlite+aiosqlite:///{path}"
    migrate(make_settings(database_url))
    with sqlite3.connect(path) as db:
        admin_id = db.execute(
            "INSERT INTO users (email, is_active, is_superuser, security_stamp, created_at,"
            " updated_at) VALUES ('admin@example.com', 1, 1, 'test-stamp',"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00') RETURNING id"
        ).fetchone()[0]
    token = token_for(make_settings(database_url), admin_id, "admin@example.com")
    with running_server(database_url, kind=Server) as served:
        served.authorization = f"Bearer {token}".encode()
        yield served
    assert "Traceback" not in "".join(served.output), "".join(served.output)


@pytest.mark.processes
@pytest.mark.parametrize(
    ("name", "size"), [("Authorization", 100_000), ("X-Request-ID", 100_000), ("Cookie", 1_000_000)]
)
def test_server_refuses_huge_headers_and_stays_up(server: Server, name: str, size: int) -> None:
    value = (b"Bearer " if name == "Authorization" else b"") + b"a" * size
    request = b"GET /api/v1/users/me HTTP/1.1\r\nHost: t\r\n" + name.encode() + b": " + value
    answer = server.exchange(request + b"\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 431, answer[:300]
    assert body_of(answer)["detail"].startswith("Request headers larger than")
    assert server.alive()


@pytest.mark.processes
def test_server_refuses_a_huge_url(server: Server) -> None:
    answer = server.exchange(b"GET /?q=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(answer) == 414
    assert server.alive()


@pytest.mark.processes
def test_server_answers_413_before_a_declared_body_arrives(server: Server) -> None:
    head = (
        b"POST /api/v1/users/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999999\r\n\r\n"
    )
    started = time.monotonic()
    answer = server.exchange(head, timeout=5)  # no body sent at all
    assert status_of(answer) == 413
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - started < 5
    assert server.alive()


@pytest.mark.processes
def test_server_answers_413_to_a_chunked_body_over_the_limit(server: Server) -> None:
    chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
    request = (
        b"POST /api/v1/users/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: " + server.authorization + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 2 + b"0\r\n\r\n"
    )
    answer = server.exchange(request)
    assert status_of(answer) == 413
    assert body_of(answer)["detail"].startswith("Request body larger than")
    assert server.alive()


@pytest.mark.processes
@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /api/v1/users/\xff\xfe HTTP/1.1",
        b"GET /api/v1/users/?limit=\xff HTTP/1.1",
        b"GET /\x00 HTTP/1.1",
    ],
)
def test_server_refuses_raw_bytes_that_are_not_a_url(server: Server, request_line: bytes) -> None:
    """Refused by the HTTP parser itself, before the app: a plain-text 400 (uvicorn's own)."""
    answer = server.exchange(request_line + b"\r\nHost: t\r\n\r\n")
    assert status_of(answer) == 400
    assert server.alive()


@pytest.mark.processes
@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"/api/v1/users/%ff%fe", 422),  # the user id, decoded, is not text
        (b"/api/v1/users/%zz", 422),  # nor a number
        (b"/?limit=%ff&%zz=1", 200),  # a route without parameters ignores the query
        (b"/%2e%2e/%2e%2e/etc/passwd", 404),  # no route, and no file is ever served
    ],
)
def test_server_handles_odd_percent_encoding(server: Server, target: bytes, status: int) -> None:
    """Authenticated as an admin, so the users routes get past authentication (a 401 comes
    before the path is looked at) and their path parameter is decoded and validated."""
    answer = server.exchange(
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: t\r\nAuthorization: "
        + server.authorization
        + b"\r\nConnection: close\r\n\r\n"
    )
    assert status_of(answer) == status, answer[:300]
    if status != 200:
        assert body_of(answer)["detail"]
    assert server.alive()


@pytest.mark.processes
def test_server_refuses_control_characters_in_headers(server: Server) -> None:
    answer = server.exchange(b"GET / HTTP/1.1\r\nHost: t\r\nX-Foo: a\x00b\r\n\r\n")
    assert status_of(answer) == 400
    assert server.alive()


@pytest.mark.processes
def test_server_survives_non_latin1_header_bytes(server: Server) -> None:
    answer = server.exchange(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: \xff\xfe\r\nConnection: close\r\n\r\n"
    )
    assert status_of(answer) == 200
    assert re.search(rb"(?im)^x-request-id: [0-9a-f]{32}\r$", answer)


def pipelined_then_junk(server: Server, junk: bytes, *, junk_after_answers: bool) -> bytes:
    """Two POSTs with bodies in one write, then `junk` (in the same write, or once both are
    answered), then the client's half of the connection closed; everything the server answers
    until it closes."""
    body = b'{"title": "Pipelined"}'
    request = (
        b"POST /api/v1/posts/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: " + server.authorization + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if junk_after_answers:
                sock.sendall(request + request)
                while received.count(b"HTTP/1.1 201 ") < 2 or not received.endswith(b"}"):
                    chunk = sock.recv(65536)
                    assert chunk, received
                    received += chunk
                sock.sendall(junk)
            else:
                sock.sendall(request + request + junk)
            sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return received


def settled(server: Server, start: int, count: Callable[[list[str]], int]) -> list[str]:
    """The server's output since line `start`, once `count` of it has not changed for 1 s (the
    app may still be serving requests whose connection is gone)."""
    deadline = time.monotonic() + 30
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = count(server.output[start:])
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 1:
            break
        time.sleep(0.05)
    return server.output[start:]


def output_after_earlier_tests(server: Server) -> int:
    """Where this test's part of the server's output starts: after a request's access line,
    waited for. Earlier tests' lines (uvicorn's warnings for their bad requests) were written
    before it, but may reach `server.output` late on a busy machine."""
    marker = f"mark-{time.monotonic_ns()}"
    httpx.get(f"{server.base_url}/healthz", headers={"X-Request-ID": marker}, timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = list(server.output)
        for index, line in enumerate(lines):
            if f"rid={marker}" in line:
                return index + 1
        time.sleep(0.02)
    raise AssertionError(f"no access line for {marker}")


@pytest.mark.processes
def test_junk_after_pipelined_requests_costs_one_warning_and_no_false_log(server: Server) -> None:
    """Contract: a client that sends junk after a request on the same connection gets a 400 or
    a closed connection; the log holds at most one warning line for it, never an ERROR
    traceback, and the access log never records an answer that was not sent (uvicorn closes
    the connection at the junk, maybe while the first request is still being served)."""
    start = output_after_earlier_tests(server)
    before = MetricValues(httpx.get(f"{server.base_url}/metrics").text)
    connections = 20
    answered = 0
    for number in range(connections):
        received = pipelined_then_junk(server, b"\x00junk" * 1400, junk_after_answers=number < 2)
        assert b"HTTP/1.1 400 " in received, received[:300]
        answered += len(re.findall(rb"HTTP/1\.1 201 ", received))
    assert answered >= 4  # the two connections that waited for their answers got them

    def posts_logged(lines: list[str]) -> int:
        return sum(" POST /api/v1/posts/ " in line for line in lines)

    logged = settled(server, start, posts_logged)
    access = [line for line in logged if " POST /api/v1/posts/ " in line]
    text = "".join(logged)
    assert "Traceback" not in text and "ERROR" not in text, text[:3000]
    warnings = [line for line in logged if "WARNING" in line]
    assert len(warnings) <= connections, warnings
    # Every request the app served is logged once: with its status when the answer went out,
    # as 499 (client closed request) when the connection was already gone.
    assert sum(" 201 " in line for line in access) == answered, access
    assert all(" 201 " in line or " 499 " in line for line in access), access
    after = MetricValues(httpx.get(f"{server.base_url}/metrics").text)
    posts = {"method": "POST", "route": "/api/v1/posts/"}

    def counted(status: str) -> float:
        name = "megapolis_http_requests_total"
        return after.get(name, **posts, status=status) - before.get(name, **posts, status=status)

    assert (counted("201"), counted("499")) == (answered, len(access) - answered)
    assert server.alive()
