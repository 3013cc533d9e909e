"""Posts (contract: Resources): every row of the table, the ownership matrix, on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.models.post import Post
from app.models.user import User
from tests.conftest import AuthHeaders, UserFactory

POSTS = "/api/v1/posts/"


async def add_post(app: FastAPI, author: User, title: str = "Hello", **values: Any) -> Post:
    async with app.state.database.sessionmaker() as session:
        post = await Post.create(session, author_id=author.id, title=title, **values)
        await session.commit()
        return post


# --- create ---------------------------------------------------------------------------------


async def test_create_post(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    author = await make_user()
    response = await client.post(
        POSTS,
        json={"title": "  First post  ", "body": "Line one\nLine two\twith a tab"},
        headers=auth(author),
    )
    assert response.status_code == 201, response.text
    post = response.json()
    assert post["title"] == "First post"  # trimmed
    assert post["body"] == "Line one\nLine two\twith a tab"
    assert post["author_id"] == author.id
    assert set(post) == {"id", "title", "body", "author_id", "created_at", "updated_at"}
    fetched = await client.get(f"{POSTS}{post['id']}", headers=auth(author))
    assert fetched.json() == post


async def test_body_defaults_to_empty(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    response = await client.post(POSTS, json={"title": "No body"}, headers=auth(await make_user()))
    assert response.status_code == 201
    assert response.json()["body"] == ""


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": "two\nlines"},
        {"title": "bell\x07"},
        {"title": None},
        {"title": 42},
        {"title": "ok", "body": "x" * 20_001},
        {"title": "ok", "body": "nul\x00"},
        {"title": "ok", "body": "escape\x1b[31m"},
        {"title": "ok", "body": None},
        {"title": "ok", "author_id": 1},
        {"title": "ok", "id": 7},
        {"title": "ok", "created_at": "2020-01-01T00:00:00Z"},
    ],
)
async def test_create_refuses_invalid_posts(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, payload: dict[str, Any]
) -> None:
    response = await client.post(POSTS, json=payload, headers=auth(await make_user()))
    assert response.status_code == 422, response.text


async def test_title_and_body_at_their_limits(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    payload = {"title": "t" * 200, "body": "b" * 20_000}
    response = await client.post(POSTS, json=payload, headers=auth(await make_user()))
    assert response.status_code == 201
    assert len(response.json()["title"]) == 200 and len(response.json()["body"]) == 20_000


# --- list -----------------------------------------------------------------------------------


async def test_list_is_newest_first_then_by_id(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    author = await make_user()
    now = datetime.now(timezone.utc)
    older = await add_post(app, author, "older", created_at=now - timedelta(minutes=5))
    tie_a = await add_post(app, author, "tie a", created_at=now)
    tie_b = await add_post(app, author, "tie b", created_at=now)
    response = await client.get(POSTS, headers=auth(author))
    assert response.status_code == 200
    page = response.json()
    assert [p["id"] for p in page["items"]] == [tie_b.id, tie_a.id, older.id]
    assert (page["total"], page["limit"], page["offset"]) == (3, 20, 0)


async def test_list_filters_by_author_and_pages(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    ada, bob = await make_user(), await make_user()
    start = datetime.now(timezone.utc)
    ada_posts = [
        await add_post(app, ada, f"ada {i}", created_at=start + timedelta(seconds=i))
        for i in range(5)
    ]
    await add_post(app, bob, "bob's")
    headers = auth(bob)  # any active user may read anyone's posts

    everyone = (await client.get(POSTS, headers=headers)).json()
    assert everyone["total"] == 6

    page = (
        await client.get(
            POSTS, params={"author_id": ada.id, "limit": 2, "offset": 1}, headers=headers
        )
    ).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [p["id"] for p in page["items"]] == [ada_posts[3].id, ada_posts[2].id]

    past_the_end = (
        await client.get(POSTS, params={"author_id": ada.id, "offset": 5}, headers=headers)
    ).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == 5
    nobody = (await client.get(POSTS, params={"author_id": 2147483000}, headers=headers)).json()
    assert nobody == {"items": [], "total": 0, "limit": 20, "offset": 0, "next_cursor": None}


async def test_every_page_is_its_slice_of_the_whole_list(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """A second check of `offset`, independent of the one above: every (limit, offset) window,
    including the ones that cross or pass the end, is that slice of the unpaginated list (newest
    first), with and without the author filter."""
    ada, bob = await make_user(), await make_user()
    start = datetime.now(timezone.utc)
    for i in range(5):
        await add_post(app, ada if i % 2 else bob, f"post {i}", created_at=start + timedelta(i))
    headers = auth(ada)
    for filters in ({}, {"author_id": bob.id}):
        whole = (await client.get(POSTS, params={**filters, "limit": 100}, headers=headers)).json()
        ids = [post["id"] for post in whole["items"]]
        assert len(ids) == whole["total"] == (5 if not filters else 3)
        for limit in (1, 2, 3):
            for offset in range(len(ids) + 2):
                params = {**filters, "limit": limit, "offset": offset}
                page = (await client.get(POSTS, params=params, headers=headers)).json()
                assert [post["id"] for post in page["items"]] == ids[offset : offset + limit], (
                    params
                )
                assert (page["total"], page["offset"]) == (len(ids), offset)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"author_id": 0},
        {"author_id": "x"},
        {"limit": 10**30},
    ],
)
async def test_list_bounds(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, params: dict[str, Any]
) -> None:
    response = await client.get(POSTS, params=params, headers=auth(await make_user()))
    assert response.status_code == 422


async def test_list_limit_100_is_allowed(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    response = await client.get(POSTS, params={"limit": 100}, headers=auth(await make_user()))
    assert response.status_code == 200 and response.json()["limit"] == 100


# --- read, change, delete -------------------------------------------------------------------


async def test_missing_post_is_404_everywhere(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    path = f"{POSTS}2147483000"
    for method, body in (("GET", None), ("PATCH", {"title": "x"}), ("DELETE", None)):
        response = await client.request(method, path, json=body, headers=auth(admin))
        assert response.status_code == 404, (method, response.text)
        assert response.json() == {"detail": "Post not found"}


async def test_patch_changes_only_what_is_sent(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    author = await make_user()
    post = await add_post(app, author, "Title", body="Body")
    path = f"{POSTS}{post.id}"
    changed = await client.patch(path, json={"body": "New body"}, headers=auth(author))
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"] == "Title" and changed.json()["body"] == "New body"
    assert changed.json()["updated_at"] > changed.json()["created_at"]
    nothing = await client.patch(path, json={}, headers=auth(author))
    assert nothing.status_code == 200 and nothing.json() == changed.json()
    for payload in ({"title": None}, {"body": None}, {"title": " "}, {"author_id": 1}):
        refused = await client.patch(path, json=payload, headers=auth(author))
        assert refused.status_code == 422, payload
    # The author cannot be changed to someone else through any field.
    assert (await client.get(path, headers=auth(author))).json()["author_id"] == author.id


async def test_deleting_a_user_deletes_their_posts(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin, author, other = await make_user(is_superuser=True), await make_user(), await make_user()
    gone = await add_post(app, author, "will go")
    kept = await add_post(app, other, "stays")
    assert (
        await client.delete(f"/api/v1/users/{author.id}", headers=auth(admin))
    ).status_code == 204
    assert (await client.get(f"{POSTS}{gone.id}", headers=auth(admin))).status_code == 404
    assert (await client.get(f"{POSTS}{kept.id}", headers=auth(admin))).status_code == 200
    async with app.state.database.sessionmaker() as session:
        remaining = await session.scalar(
            text("SELECT count(*) FROM posts WHERE author_id = :a"), {"a": author.id}
        )
    assert remaining == 0


async def test_deactivated_users_token_cannot_post(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user(is_active=False)
    response = await client.post(POSTS, json={"title": "x"}, headers=auth(user))
    assert response.status_code == 401


# --- who may do what ------------------------------------------------------------------------

CALLERS = ["anonymous", "author", "other", "superuser"]
EXPECTED = {
    "create": {"anonymous": 401, "author": 201, "other": 201, "superuser": 201},
    "list": {"anonymous": 401, "author": 200, "other": 200, "superuser": 200},
    "read": {"anonymous": 401, "author": 200, "other": 200, "superuser": 200},
    "update": {"anonymous": 401, "author": 200, "other": 403, "superuser": 200},
    "delete": {"anonymous": 401, "author": 204, "other": 403, "superuser": 204},
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", list(EXPECTED))
async def test_ownership_matrix(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_user: UserFactory,
    auth: AuthHeaders,
    operation: str,
    caller: str,
) -> None:
    author, other = await make_user(), await make_user()
    admin = await make_user(is_superuser=True)
    post = await add_post(app, author, "Owned", body="original")
    headers = {"author": auth(author), "other": auth(other), "superuser": auth(admin)}.get(
        caller, {}
    )
    path = f"{POSTS}{post.id}"
    method, url, body = {
        "create": ("POST", POSTS, {"title": "New"}),
        "list": ("GET", POSTS, None),
        "read": ("GET", path, None),
        "update": ("PATCH", path, {"title": "Changed"}),
        "delete": ("DELETE", path, None),
    }[operation]

    response = await client.request(method, url, json=body, headers=headers)

    assert response.status_code == EXPECTED[operation][caller], response.text
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    current = await client.get(path, headers=auth(admin))
    if operation == "update":
        changed = response.status_code == 200
        assert current.json()["title"] == ("Changed" if changed else "Owned")
        assert current.json()["author_id"] == author.id  # a superuser's edit keeps the author
    if operation == "delete":
        assert current.status_code == (404 if response.status_code == 204 else 200)
    if operation == "create" and response.status_code == 201:
        creator = {"author": author, "other": other, "superuser": admin}[caller]
        assert response.json()["author_id"] == creator.id


# --- the indexes the list relies on -----------------------------------------------------------


async def test_both_list_orders_use_an_index(
    app: FastAPI, make_user: UserFactory, backend: str
) -> None:
    author = await make_user()
    await add_post(app, author)
    newest = "SELECT id FROM posts ORDER BY created_at DESC, id DESC LIMIT 20"
    by_author = (
        "SELECT id FROM posts WHERE author_id = 1 ORDER BY created_at DESC, id DESC LIMIT 20"
    )
    async with app.state.database.engine.connect() as connection:
        if backend == "postgresql":
            await connection.execute(text("SET enable_seqscan = off"))
            await connection.execute(text("SET enable_sort = off"))
            explain = "EXPLAIN "
        else:
            explain = "EXPLAIN QUERY PLAN "
        plans = []
        for query in (newest, by_author):
            rows = (await connection.execute(text(explain + query))).all()
            plans.append(" ".join(str(value) for row in rows for value in row))
    assert "ix_posts_newest" in plans[0], plans[0]
    assert "ix_posts_author_newest" in plans[1], plans[1]
