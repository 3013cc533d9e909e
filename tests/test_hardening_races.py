"""A row that vanishes under a request (issue 7, section 1, item 9): a PATCH racing a DELETE of
the same user answered 500 (`StaleDataError` on flush). The exception handlers map it, and any
unforeseen `IntegrityError`, for every resource: 404 and 409, never 500.

The deterministic tests delete the row inside the request's own transaction, just before its
flush, so the race is lost on every run; the race tests run many real PATCH/DELETE pairs at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.pool import Pool

from app.config import Settings
from app.dependencies import SessionDep
from app.main import create_app
from app.models.post import Post
from app.models.user import User
from tests.conftest import AuthHeaders, UserFactory, asgi_client, delete_all_rows

USERS = "/api/v1/users/"
POSTS = "/api/v1/posts/"
RACES = 40


@contextmanager
def row_deleted_before_flush(table: Any, row_id: int) -> Iterator[None]:
    """Every flush, and every UPDATE statement a session runs (`app/db/rows.py`'s
    `update_row`), in this block first deletes row `row_id` of `table` on the same connection
    (in the same transaction, when there is one): the request's UPDATE then matches no row, as
    when a concurrent DELETE commits first."""

    def delete_row(session: Session, _: UOWTransaction, __: Any) -> None:
        session.connection().execute(delete(table).where(table.c.id == row_id))

    def delete_row_before_update(state: ORMExecuteState) -> None:
        if state.is_update:
            state.session.connection().execute(delete(table).where(table.c.id == row_id))

    event.listen(Session, "before_flush", delete_row)
    event.listen(Session, "do_orm_execute", delete_row_before_update)
    try:
        yield
    finally:
        event.remove(Session, "before_flush", delete_row)
        event.remove(Session, "do_orm_execute", delete_row_before_update)


@contextmanager
def row_deleted_before_the_one_statement(table: Any, row_id: int) -> Iterator[None]:
    """The same for a use case of one statement (`app/db/rows.py` `autocommit`), which runs it
    on a pooled connection outside a transaction: row `row_id` of `table` is deleted, and
    committed, when the request takes its second connection (the first reads the caller), just
    before that statement runs on it."""
    checkouts = 0

    def delete_row(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        nonlocal checkouts
        checkouts += 1
        if checkouts == 2:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"DELETE FROM {table.name} WHERE id = {int(row_id)}")
            cursor.close()
            dbapi_connection.commit()

    event.listen(Pool, "checkout", delete_row)
    try:
        yield
    finally:
        event.remove(Pool, "checkout", delete_row)
    assert checkouts >= 2, "the request took no connection for its statement"


def assert_404(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Not found"}


async def test_patch_of_a_user_deleted_before_its_flush_is_404(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    target = await make_user()
    with row_deleted_before_flush(User.__table__, target.id):
        patched = await client.patch(
            f"{USERS}{target.id}", headers=auth(admin), json={"full_name": "Too late"}
        )
    assert_404(patched)
    # The deletion was part of the request's transaction, rolled back with it.
    unchanged = await client.get(f"{USERS}{target.id}", headers=auth(admin))
    assert unchanged.json()["full_name"] is None


async def test_patch_of_own_record_deleted_before_its_flush_is_404(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    with row_deleted_before_the_one_statement(User.__table__, user.id):
        patched = await client.patch(USERS + "me", headers=auth(user), json={"full_name": "Gone"})
    assert_404(patched)


async def test_a_post_whose_author_is_deleted_under_it_is_409(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """POST /posts/ is one INSERT (on asyncpg, run on the driver: app/db/rows.py): the author
    deleted between their authentication and that INSERT makes it violate the foreign key,
    answered as any integrity error (409), not 500."""
    author = await make_user()
    with row_deleted_before_the_one_statement(User.__table__, author.id):
        created = await client.post(POSTS, headers=auth(author), json={"title": "Orphan"})
    assert created.status_code == 409, created.text
    assert created.json() == {"detail": "Conflict with an existing record"}


async def test_patch_of_a_post_deleted_before_its_flush_is_404(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """Another resource, with no code of its own for this: the handler covers it."""
    author = await make_user()
    created = await client.post(POSTS, headers=auth(author), json={"title": "Mine"})
    assert created.status_code == 201, created.text
    post_id = created.json()["id"]
    with row_deleted_before_flush(Post.__table__, post_id):
        patched = await client.patch(
            f"{POSTS}{post_id}", headers=auth(author), json={"title": "Renamed"}
        )
    assert_404(patched)


@pytest.fixture
async def app_with_probe_routes(db_settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with two routes a future resource might have, written without any error
    handling: one refreshes a row deleted under it, one inserts a duplicate email."""
    application = create_app(db_settings)

    async def read_expired(session: SessionDep) -> dict[str, str]:
        user = await User.create(session, email=f"gone-{uuid.uuid4().hex}@example.com")
        await session.commit()
        users: Any = User.__table__  # a Core DELETE: the session does not see it
        await session.execute(delete(users).where(users.c.id == user.id))
        session.expire(user, ["email"])
        email = await session.run_sync(lambda _: user.email)  # loads the expired attribute
        return {"email": email}

    async def insert_duplicate(session: SessionDep) -> dict[str, str]:
        email = f"twice-{uuid.uuid4().hex}@example.com"
        session.add(User(email=email, security_stamp="a"))
        await session.commit()
        session.add(User(email=email, security_stamp="b"))
        await session.commit()
        return {"email": email}

    application.add_api_route("/probe/expired", read_expired, methods=["POST"])
    application.add_api_route("/probe/duplicate", insert_duplicate, methods=["POST"])
    async with application.router.lifespan_context(application):
        try:
            yield application
        finally:
            await delete_all_rows(application.state.database)


async def test_a_row_deleted_before_its_attributes_load_is_404(
    app_with_probe_routes: FastAPI,
) -> None:
    async with asgi_client(app_with_probe_routes) as http:
        assert_404(await http.post("/probe/expired"))


async def test_an_unforeseen_integrity_error_is_409(app_with_probe_routes: FastAPI) -> None:
    async with asgi_client(app_with_probe_routes) as http:
        response = await http.post("/probe/duplicate")
    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "Conflict with an existing record"}


# --- The race itself, over HTTP ---


async def race(
    client: httpx.AsyncClient, patch: tuple[str, dict[str, str]], remove: tuple[str, dict[str, str]]
) -> tuple[int, int]:
    patch_path, patch_headers = patch
    delete_path, delete_headers = remove
    patched, deleted = await asyncio.gather(
        client.patch(patch_path, headers=patch_headers, json={"full_name": "Racing"}),
        client.delete(delete_path, headers=delete_headers),
    )
    return patched.status_code, deleted.status_code


async def test_patch_racing_delete_never_answers_500(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    users = [await make_user() for _ in range(RACES)]
    pairs = []
    for index, user in enumerate(users):
        path = f"{USERS}{user.id}"
        if index % 2:  # the superuser patches by id while the user deletes itself
            pairs.append(race(client, (path, auth(admin)), (path, auth(user))))
        else:  # the user patches /me while the superuser deletes it
            pairs.append(race(client, (USERS + "me", auth(user)), (path, auth(admin))))
    outcomes = await asyncio.gather(*pairs)
    patches = Counter(patched for patched, _ in outcomes)
    deletes = Counter(deleted for _, deleted in outcomes)
    # PATCH: done first (200), or the row was gone (404), or the caller was (401 on /me).
    assert set(patches) <= {200, 401, 404}, patches
    assert set(deletes) <= {204, 404}, deletes
    assert deletes[204] == RACES, deletes
    listing = await client.get(USERS, headers=auth(admin))
    assert listing.json()["total"] == 1
