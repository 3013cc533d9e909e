"""What each use case sends the database (`app/db/rows.py`): a use case that is one statement is
one round trip (no BEGIN/COMMIT around it), one of several statements stays in one transaction,
and a connection that ran a statement outside a transaction goes back to the pool as it came
(the next use case on it gets its transaction again). Counted on PostgreSQL, with asyncpg's own
query log of every statement each pooled connection sends."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from app.main import create_app
from tests.conftest import AuthHeaders, UserFactory, asgi_client, delete_all_rows, make_settings
from tests.tcp_proxy import TCPProxy

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


class Statements:
    """The statements the app executes on PostgreSQL and the round trips it makes, read on the
    wire: a proxy between the app and the server parses what the app sends (PostgreSQL's
    frontend messages). A round trip is a simple query (`Q`, as BEGIN and COMMIT are sent) or
    a Sync (`S`, ending a Parse/Bind/Execute batch), each of which waits for the server."""

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.round_trips = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[list[str], int]:
        with self._lock:
            taken = (self.executed, self.round_trips)
            self.executed, self.round_trips = [], 0
        return taken

    def parser(self) -> Callable[[bytes], None]:
        """A parser for one connection's client-to-server bytes."""
        buffer = b""
        started = False
        prepared: dict[bytes, str] = {}
        bound = ""

        def feed(data: bytes) -> None:
            nonlocal buffer, started, bound
            buffer += data
            while True:
                if not started:  # SSLRequest / StartupMessage: no type byte
                    if len(buffer) < 8:
                        return
                    (length,) = struct.unpack("!I", buffer[:4])
                    if len(buffer) < length:
                        return
                    (code,) = struct.unpack("!I", buffer[4:8])
                    started = code not in (80877103, 80877104)  # SSL, GSS encryption requests
                    buffer = buffer[length:]
                    continue
                if len(buffer) < 5:
                    return
                kind = buffer[:1]
                (length,) = struct.unpack("!I", buffer[1:5])
                if len(buffer) < 1 + length:
                    return
                payload, buffer = buffer[5 : 1 + length], buffer[1 + length :]
                with self._lock:
                    if kind == b"Q":
                        self.executed.append(first_word(payload.rstrip(b"\0")))
                        self.round_trips += 1
                    elif kind == b"P":
                        name, sql, _ = payload.split(b"\0", 2)
                        prepared[name] = first_word(sql)
                    elif kind == b"B":
                        bound = prepared.get(payload.split(b"\0", 2)[1], "?")
                    elif kind == b"E":
                        self.executed.append(bound)
                    elif kind == b"S":
                        self.round_trips += 1

        return feed


def first_word(sql: bytes) -> str:
    return sql.split(None, 1)[0].decode().upper().rstrip(";") if sql.strip() else ""


class CountingProxy(TCPProxy):
    """`TCPProxy` that shows `statements` what each client sends."""

    def __init__(self, upstream_port: int, statements: Statements) -> None:
        super().__init__(upstream_port)
        self.statements = statements
        self._parsers: dict[socket.socket, Callable[[bytes], None]] = {}

    def _connect_upstream(self, client: socket.socket) -> None:
        self._parsers[client] = self.statements.parser()
        super()._connect_upstream(client)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        feed = self._parsers.get(source)
        if feed is None:  # the server's answers
            super()._pump(source, target)
            return
        try:
            while data := source.recv(65536):
                feed(data)
                target.sendall(data)
        except OSError:
            pass
        self._untrack_and_close(source, target)


@pytest.fixture
def statements() -> Statements:
    return Statements()


@pytest.fixture
async def one_connection_app(database_url: str, statements: Statements) -> AsyncIterator[FastAPI]:
    """The app through the counting proxy, with a pool of one connection: whatever a use case
    leaves on it, the next one meets."""
    url = make_url(database_url)
    with CountingProxy(url.port or 5432, statements) as proxy:
        through_proxy = url.set(port=proxy.port).update_query_dict({"sslmode": "disable"})
        settings = make_settings(
            through_proxy.render_as_string(hide_password=False),
            DATABASE_POOL_SIZE=1,
            DATABASE_MAX_OVERFLOW=0,
        )
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            # The test counts rows: whatever an earlier test on this session's database left.
            await delete_all_rows(application.state.database)
            try:
                yield application
            finally:
                await delete_all_rows(application.state.database)


Send = Callable[[], Awaitable[httpx.Response]]


async def second_time(send: Send, statements: Statements) -> tuple[httpx.Response, list[str], int]:
    """Sends a request twice (the first prepares the statements it uses) and gives the second's
    answer, the statements it executed and the round trips it made."""
    await send()
    statements.take()
    response = await send()
    return (response, *statements.take())


async def test_a_one_statement_use_case_is_one_round_trip(
    one_connection_app: FastAPI, make_user: UserFactory, auth: AuthHeaders, statements: Statements
) -> None:
    owner = await make_user("owner@example.com")
    admin = await make_user("admin@example.com", is_superuser=True)
    async with asgi_client(one_connection_app) as http:
        names = iter(["Ada", "Ada Lovelace"])
        # The caller's read, then the UPDATE: two round trips, no transaction.
        patched, executed, round_trips = await second_time(
            lambda: http.patch(
                "/api/v1/users/me", json={"full_name": next(names)}, headers=auth(owner)
            ),
            statements,
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["full_name"] == "Ada Lovelace"
        assert (executed, round_trips) == (["SELECT", "UPDATE"], 2)

        created, executed, round_trips = await second_time(
            lambda: http.post("/api/v1/posts/", json={"title": "Hi"}, headers=auth(owner)),
            statements,
        )
        assert created.status_code == 201 and created.json()["author_id"] == owner.id
        assert (executed, round_trips) == (["SELECT", "INSERT"], 2)

        # A read by id in a read session: the caller, then the record; no transaction.
        read, executed, round_trips = await second_time(
            lambda: http.get(f"/api/v1/users/{owner.id}", headers=auth(admin)), statements
        )
        assert read.status_code == 200 and read.json()["full_name"] == "Ada Lovelace"
        assert (executed, round_trips) == (["SELECT", "SELECT"], 2)

        # A page of a list and its bounded total: one statement (app/db/pagination.py), by
        # offset and by cursor; no transaction.
        first, executed, round_trips = await second_time(
            lambda: http.get("/api/v1/users/?limit=1", headers=auth(admin)), statements
        )
        assert first.status_code == 200 and first.json()["total"] == 2, first.text
        assert (executed, round_trips) == (["SELECT", "SELECT"], 2)
        cursor = first.json()["next_cursor"]
        after, executed, round_trips = await second_time(
            lambda: http.get(f"/api/v1/users/?limit=1&cursor={cursor}", headers=auth(admin)),
            statements,
        )
        assert after.status_code == 200 and after.json()["total"] == 2, after.text
        assert (executed, round_trips) == (["SELECT", "SELECT"], 2)

        # A superuser changing someone else's record: the record, its change and the audit row
        # (issue 16), on the very connection the UPDATE above ran on outside a transaction: in
        # one transaction again.
        names = iter(["Bea", "Bea Smith"])
        renamed, executed, _ = await second_time(
            lambda: http.patch(
                f"/api/v1/users/{owner.id}", json={"full_name": next(names)}, headers=auth(admin)
            ),
            statements,
        )
        assert renamed.status_code == 200 and renamed.json()["full_name"] == "Bea Smith"
        assert executed == ["SELECT", "BEGIN", "SELECT", "UPDATE", "INSERT", "COMMIT"]


async def test_a_use_case_of_several_statements_is_one_transaction(
    one_connection_app: FastAPI, make_user: UserFactory, auth: AuthHeaders, statements: Statements
) -> None:
    """A superuser's change of email checks the address, then updates: both in one
    transaction; a taken address ends it (409)."""
    admin = await make_user("admin@example.com", is_superuser=True)
    await make_user("taken@example.com")
    async with asgi_client(one_connection_app) as http:
        refused, executed, _ = await second_time(
            lambda: http.patch(
                "/api/v1/users/me", json={"email": "taken@example.com"}, headers=auth(admin)
            ),
            statements,
        )
        assert refused.status_code == 409, refused.text
        assert executed == ["SELECT", "BEGIN", "SELECT", "ROLLBACK"]
        statements.take()
        moved = await http.patch(
            "/api/v1/users/me", json={"email": "new@example.com"}, headers=auth(admin)
        )
        assert moved.status_code == 200 and moved.json()["email"] == "new@example.com"
        assert statements.take()[0] == ["SELECT", "BEGIN", "SELECT", "UPDATE", "COMMIT"]
