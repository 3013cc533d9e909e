"""Every list pages by keyset (`cursor`) or `offset` through `app.db.pagination.paginate`: the
answer's shape, the 422s, cursor walks while rows come and go, the bounded `total`, and the
index a deep page uses. Run on the users and the posts lists; generated resources' own tests
check theirs."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, insert, literal, select, text

from app.db import pagination, rows
from app.db.base import UTCDateTime
from app.db.pagination import MAX_TOTAL, PageParams, cursor_key, paginate
from app.models.post import Post
from app.models.user import User
from app.security import issue_token
from tests.conftest import TEST_SECRET, AuthHeaders, UserFactory, one_database

POSTS = "/api/v1/posts/"
USERS = "/api/v1/users/"


async def add_posts(
    app: FastAPI, author: User, count: int, *, at: datetime | None = None, step: int = 0
) -> list[Post]:
    """`count` posts, `step` seconds apart from `at` (0: all at the same instant, ordered by id)."""
    start = at or datetime.now(timezone.utc)
    async with app.state.database.sessionmaker() as session:
        posts = [
            await Post.create(
                session,
                title=f"p{i}",
                author_id=author.id,
                created_at=start + timedelta(0, i * step),
            )
            for i in range(count)
        ]
        await session.commit()
        return posts


async def delete_rows(app: FastAPI, rows: list[Any]) -> None:
    async with app.state.database.sessionmaker() as session:
        for row in rows:
            await session.delete(await session.merge(row))
        await session.commit()


Get = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
async def get(client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders) -> Get:
    """GET as a superuser (who may read both lists)."""
    headers = auth(await make_user(is_superuser=True))

    async def request(path: str, **params: Any) -> httpx.Response:
        return await client.get(path, params=params, headers=headers)

    return request


async def walk(
    get: Get, path: str, between: Callable[[int], Awaitable[None]], **params: Any
) -> list[int]:
    """The ids of every page following `next_cursor`, calling `between(page_number)` after each."""
    ids: list[int] = []
    page = (await get(path, **params)).json()
    number = 0
    while True:
        ids += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return ids
        assert len(page["next_cursor"]) <= 200
        assert page["offset"] == len(ids) - len(page["items"])
        await between(number)
        number += 1
        response = await get(path, **params, cursor=page["next_cursor"])
        assert response.status_code == 200, response.text
        page = response.json()


# --- the answer -----------------------------------------------------------------------------


async def test_pages_by_cursor_and_by_offset_agree(
    app: FastAPI, get: Get, make_user: UserFactory
) -> None:
    writer = await make_user()
    posts = await add_posts(app, writer, 7, step=0)  # one instant: the order is by id alone
    newest_first = [post.id for post in reversed(posts)]

    first = (await get(POSTS, limit=3)).json()
    assert [p["id"] for p in first["items"]] == newest_first[:3]
    assert (first["total"], first["limit"], first["offset"]) == (7, 3, 0)
    second = (await get(POSTS, limit=3, cursor=first["next_cursor"])).json()
    assert [p["id"] for p in second["items"]] == newest_first[3:6]
    assert (second["total"], second["offset"]) == (7, 3)
    by_offset = (await get(POSTS, limit=3, offset=3)).json()
    assert by_offset["items"] == second["items"] and by_offset["next_cursor"] is not None
    # From an offset page a cursor goes on where it ends.
    after_offset = (await get(POSTS, limit=3, cursor=by_offset["next_cursor"])).json()
    last = (await get(POSTS, limit=3, cursor=second["next_cursor"])).json()
    assert after_offset == last
    assert [p["id"] for p in last["items"]] == newest_first[6:]
    assert last["next_cursor"] is None and last["offset"] == 6 and last["total"] == 7


@pytest.mark.parametrize("path", [USERS, POSTS])
async def test_a_full_last_page_has_no_next_cursor(
    app: FastAPI, get: Get, make_user: UserFactory, path: str
) -> None:
    author = await make_user()
    await add_posts(app, author, 2)  # and 2 users: the superuser and the author
    page = (await get(path, limit=2)).json()
    assert len(page["items"]) == 2 and page["total"] == 2
    assert page["next_cursor"] is None
    shorter = (await get(path, limit=1)).json()
    assert shorter["next_cursor"] is not None
    assert (await get(path, limit=1, cursor=shorter["next_cursor"])).json()["next_cursor"] is None


async def test_users_list_defaults_to_20_by_id(get: Get, make_user: UserFactory) -> None:
    users = [await make_user() for _ in range(21)]
    page = (await get(USERS)).json()
    assert page["limit"] == 20 and page["total"] == 22
    ids = [user["id"] for user in page["items"]]
    assert ids == sorted(ids) and users[-1].id not in ids
    rest = (await get(USERS, cursor=page["next_cursor"])).json()
    assert [user["id"] for user in rest["items"]] == [user.id for user in users[19:]]
    assert rest["next_cursor"] is None


# --- walks while rows come and go -----------------------------------------------------------


async def test_posts_walk_sees_each_row_once_while_rows_come_and_go(
    app: FastAPI, get: Get, make_user: UserFactory
) -> None:
    ada, bob = await make_user(), await make_user()
    now = datetime.now(timezone.utc)
    # Three instants, several posts each: the walk crosses ties broken by id.
    posts = []
    for minutes in (30, 20, 10):
        posts += await add_posts(app, ada, 4, at=now - timedelta(minutes=minutes))
        posts += await add_posts(app, bob, 3, at=now - timedelta(minutes=minutes))
    at_start = {post.id for post in posts}
    deleted: set[int] = set()

    async def churn(page_number: int) -> None:
        # New posts (newer than everything: before the walk's position), and deletions both of
        # rows already seen (the cursor's own row included) and of rows not reached yet.
        await add_posts(app, bob, 2)
        page = (await get(POSTS, limit=100)).json()["items"]
        remaining = [p["id"] for p in page if p["id"] in at_start and p["id"] not in deleted]
        if page_number == 0:
            doomed = [remaining[3], remaining[-1]]  # the page's last row, the list's last row
            await delete_rows(app, [post for post in posts if post.id in doomed])
            deleted.update(doomed)

    ids = await walk(get, POSTS, churn, limit=4)
    assert len(ids) == len(set(ids)), "a row was visited twice"
    assert at_start - deleted <= set(ids), "a row that existed throughout was skipped"
    assert not deleted & set(ids[4:])

    # With the author filter: only ada's, each once, while she writes more and bob deletes.
    ada_ids = {post.id for post in posts if post.author_id == ada.id} - deleted
    bobs = [post for post in posts if post.author_id == bob.id and post.id not in deleted]

    async def ada_writes(page_number: int) -> None:
        await add_posts(app, ada, 1)
        await delete_rows(app, [bobs[page_number]])

    only_ada = await walk(get, POSTS, ada_writes, limit=3, author_id=ada.id)
    assert len(only_ada) == len(set(only_ada)) and set(only_ada) == ada_ids


async def test_users_walk_sees_each_row_once_while_rows_come_and_go(
    app: FastAPI, get: Get, make_user: UserFactory
) -> None:
    users = [await make_user() for _ in range(9)]
    ids_at_start = (await get(USERS, limit=100)).json()["items"]
    at_start = {user["id"] for user in ids_at_start}
    deleted: set[int] = set()

    async def churn(page_number: int) -> None:
        await make_user()
        if page_number == 0:
            doomed = [users[1], users[6]]  # one already seen, one ahead
            await delete_rows(app, doomed)
            deleted.update(user.id for user in doomed)

    ids = await walk(get, USERS, churn, limit=3)
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert at_start - deleted <= set(ids)
    assert users[6].id not in ids


# --- refusals -------------------------------------------------------------------------------


@pytest.fixture
async def cursors(app: FastAPI, get: Get, make_user: UserFactory) -> dict[str, str]:
    """A next_cursor of each list, and of the posts list filtered by an author."""
    ada = await make_user()
    await add_posts(app, ada, 3)
    return {
        "users": (await get(USERS, limit=1)).json()["next_cursor"],
        "posts": (await get(POSTS, limit=1)).json()["next_cursor"],
        "ada": (await get(POSTS, limit=1, author_id=ada.id)).json()["next_cursor"],
        "ada_id": str(ada.id),
    }


def tampered(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-3] ^= 0x01  # one bit of the payload (a digit of the last row's id)
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        (POSTS, {"offset": "0", "cursor": "{posts}"}, "cursor"),
        (USERS, {"offset": "3", "cursor": "{users}"}, "cursor"),
        (POSTS, {"offset": "10001"}, "offset"),
        (USERS, {"offset": "10001"}, "offset"),
        (POSTS, {"cursor": "not a cursor!"}, "cursor"),
        (POSTS, {"cursor": "AAAA"}, "cursor"),
        (POSTS, {"cursor": ""}, "cursor"),
        (POSTS, {"cursor": "x" * 201}, "cursor"),
        (USERS, {"cursor": "%00\u00e9\ud7ff"}, "cursor"),
        (POSTS, {"cursor": "{posts_tampered}"}, "cursor"),
        (USERS, {"cursor": "{users_tampered}"}, "cursor"),
        (POSTS, {"cursor": "{users}"}, "cursor"),  # another list
        (USERS, {"cursor": "{posts}"}, "cursor"),
        (POSTS, {"cursor": "{ada}"}, "cursor"),  # another filter: none
        (POSTS, {"cursor": "{posts}", "author_id": "{ada_id}"}, "cursor"),
        (POSTS, {"cursor": "{ada}", "author_id": "1{ada_id}"}, "cursor"),
        (POSTS, {"limit": "101"}, "limit"),
    ],
)
async def test_bad_page_parameters_are_422_naming_the_parameter(
    get: Get, cursors: dict[str, str], path: str, params: dict[str, str], parameter: str
) -> None:
    values = {**cursors}
    values.update({f"{name}_tampered": tampered(cursors[name]) for name in ("posts", "users")})
    response = await get(path, **{name: value.format(**values) for name, value in params.items()})
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["query", parameter]]


async def test_the_cursors_refused_above_work_where_they_were_made(
    get: Get, cursors: dict[str, str]
) -> None:
    """The other half of the test above: each cursor is good on its own list and filter."""
    assert (await get(USERS, cursor=cursors["users"])).status_code == 200
    assert (await get(POSTS, cursor=cursors["posts"])).status_code == 200
    on_filter = await get(POSTS, cursor=cursors["ada"], author_id=cursors["ada_id"])
    assert on_filter.status_code == 200 and len(on_filter.json()["items"]) == 2
    assert (await get(POSTS, offset="10000")).status_code == 200


@one_database
async def test_a_cursor_signed_with_another_key_is_refused(
    app: FastAPI, get: Get, make_user: UserFactory
) -> None:
    """A client cannot forge a cursor without the key (derived from JWT_SECRET_KEY)."""
    await make_user()
    for key, accepted in ((cursor_key(TEST_SECRET), True), (cursor_key("x" * 40), False)):
        params = PageParams(key=key, limit=1, scope=f'["{USERS}",[]]')
        async with app.state.database.sessionmaker() as session:
            page = await paginate(session, User.listed(), order=User.list_order(), params=params)
        assert page.next_cursor is not None
        response = await get(USERS, limit=1, cursor=page.next_cursor)
        assert (response.status_code == 200) is accepted, response.text


async def test_a_read_session_pages_as_a_write_session_does(
    app: FastAPI, make_user: UserFactory, backend: str
) -> None:
    """A read session's page is read outside the ORM (app/db/rows.py `select_detached`; on
    asyncpg on the driver itself, no SQLAlchemy execution): the same objects, totals and
    cursors as the ORM's, detached; a statement whose SQL depends on its values (an expanding
    IN) takes SQLAlchemy's execution and still pages."""
    author = await make_user()
    posts = await add_posts(app, author, 7, step=1)
    database = app.state.database
    executed: list[str] = []

    def count(*args: Any) -> None:
        executed.append(args[2])

    for statement in (Post.listed(), Post.listed().where(Post.id.in_([p.id for p in posts[1:]]))):
        pages: dict[str, list[tuple[list[dict[str, Any]], int | None, int]]] = {}
        for kind in ("read", "write"):
            maker = database.read_sessionmaker if kind == "read" else database.sessionmaker
            params = PageParams(key=cursor_key(TEST_SECRET), limit=3)
            seen = pages[kind] = []
            while True:
                executed.clear()
                event.listen(database.engine.sync_engine, "before_cursor_execute", count)
                try:
                    async with maker() as session:
                        page = await paginate(
                            session, statement, order=Post.list_order(), params=params
                        )
                finally:
                    event.remove(database.engine.sync_engine, "before_cursor_execute", count)
                on_driver = (
                    kind == "read" and backend == "postgresql" and "IN" not in str(statement)
                )
                assert (executed == []) is on_driver, executed
                seen.append(([vars_of(post) for post in page.items], page.total, page.offset))
                if page.next_cursor is None:
                    break
                params = PageParams(key=params.key, limit=3, cursor=page.next_cursor)
        assert pages["read"] == pages["write"]
        assert [len(items) for items, _, _ in pages["read"]] == [3, 3, 1][: len(pages["read"])]
        assert pages["read"][0][1] == len(posts) - ("IN" in str(statement))


def vars_of(post: Post) -> dict[str, Any]:
    return {column.key: getattr(post, column.key) for column in Post.__table__.c}


# --- the bounded total ----------------------------------------------------------------------


async def insert_posts_fast(app: FastAPI, author_id: int, count: int) -> None:
    """`count` posts in one INSERT ... SELECT over a recursive counter (both databases)."""
    numbers = select(literal(1).label("i")).cte("numbers", recursive=True)
    numbers = numbers.union_all(select(numbers.c.i + 1).where(numbers.c.i < count))
    now = literal(datetime.now(timezone.utc), UTCDateTime())
    rows = select(literal("bulk"), literal(""), literal(author_id), now, now).select_from(numbers)
    columns = ["title", "body", "author_id", "created_at", "updated_at"]
    async with app.state.database.engine.begin() as connection:
        await connection.execute(insert(Post).from_select(columns, rows))


async def test_total_is_exact_to_10000_and_null_above(
    app: FastAPI, get: Get, make_user: UserFactory, backend: str
) -> None:
    bulk, few = await make_user(), await make_user()
    await insert_posts_fast(app, bulk.id, MAX_TOTAL)
    await add_posts(app, few, 1)
    over = (await get(POSTS, limit=5)).json()
    assert over["total"] is None and len(over["items"]) == 5  # 10,001 posts
    deep = (await get(POSTS, limit=5, cursor=over["next_cursor"])).json()
    assert deep["total"] is None and deep["offset"] == 5
    assert (await get(POSTS, author_id=few.id)).json()["total"] == 1
    assert (await get(POSTS, author_id=bulk.id, limit=1)).json()["total"] == MAX_TOTAL
    last = (await get(POSTS, offset=MAX_TOTAL, limit=5)).json()
    assert len(last["items"]) == 1 and last["next_cursor"] is None and last["total"] is None

    # A page deep into the list, reached by cursor, is an index range scan, not a sort: for
    # everyone's posts and for one author's.
    explain = "EXPLAIN " if backend == "postgresql" else "EXPLAIN QUERY PLAN "
    if backend == "postgresql":
        async with app.state.database.engine.begin() as connection:
            await connection.execute(text("ANALYZE posts"))
    for index, filters in (
        ("ix_posts_newest", {}),
        ("ix_posts_author_newest", {"author_id": bulk.id}),
    ):
        deep = (await get(POSTS, limit=100, offset=9_000, **filters)).json()
        statement, parameters = await page_query(app, POSTS, cursor=deep["next_cursor"], **filters)
        async with app.state.database.engine.connect() as connection:
            plan = (await connection.exec_driver_sql(explain + statement, parameters)).all()
        plan_text = " ".join(str(value) for row in plan for value in row)
        # (With these statistics, almost every post being the bulk author's, PostgreSQL may read
        # the author's page off either index; both start at the cursor's bound.)
        assert index in plan_text or (backend == "postgresql" and "ix_posts_" in plan_text), (
            plan_text
        )
        # The cursor's bound is where the scan starts (PostgreSQL: an index condition on the
        # row comparison; SQLite: a SEARCH, not a SCAN of the index), not a filter on each row.
        assert ("Index Cond: " if backend == "postgresql" else "SEARCH") in plan_text, plan_text
        assert "ROW(created_at, id) <" in plan_text or backend == "sqlite", plan_text
        assert "Sort" not in plan_text and "TEMP B-TREE" not in plan_text, plan_text


async def test_a_list_s_statement_is_built_once_then_only_its_values_change(
    app: FastAPI, make_user: UserFactory, backend: str
) -> None:
    """On the driver a page's statement is built once per list, filter and kind of page (a
    `rows.Template`); the next pages of any author's list, by cursor or offset, only give it
    their values: each author's pages hold that author's posts, in order, with their totals."""
    authors = [await make_user(), await make_user()]
    posted = {
        author.id: [p.id for p in await add_posts(app, author, 5, step=1)] for author in authors
    }
    built: list[int] = []
    page_statement = pagination._PageQuery.build

    def counted(query: Any) -> Any:
        built.append(1)
        return page_statement(query)

    database = app.state.database
    key = cursor_key(TEST_SECRET)
    seen: dict[int, list[int]] = {}
    # From no template (another test's walk may have made these).
    with (
        patch.object(pagination._PageQuery, "build", counted),
        patch.dict(rows._TEMPLATES, clear=True),
    ):
        for author in authors:
            statement = Post.listed(author_id=author.id)
            ids = seen[author.id] = []
            params = PageParams(key=key, limit=2)
            while True:
                async with database.read_sessionmaker() as session:
                    page = await paginate(
                        session, statement, order=Post.list_order(), params=params
                    )
                assert page.total == 5
                ids += [post.id for post in page.items]
                if page.next_cursor is None:
                    break
                params = PageParams(key=key, limit=2, cursor=page.next_cursor)
            async with database.read_sessionmaker() as session:
                by_offset = await paginate(
                    session,
                    statement,
                    order=Post.list_order(),
                    params=PageParams(key=key, offset=3),
                )
            assert [post.id for post in by_offset.items] == ids[3:]
    for author in authors:
        assert seen[author.id] == posted[author.id][::-1]
    # The first author's walk built the first page, the cursor pages and the offset page once
    # each; the second author's, on the driver, nothing.
    assert len(built) == (3 if backend == "postgresql" else 2 * (3 + 1))


async def page_query(app: FastAPI, path: str, **params: Any) -> tuple[str, Any]:
    """The SQL (and its parameters) that serves the page `params` asks for."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "ORDER BY" in statement.upper():  # the page's query (its total a subquery of it)
            statements.append((statement, parameters))

    # On asyncpg a read session's page runs on the driver (app/db/rows.py): seen there.
    parameters_of = rows._DriverSelect.parameters

    def capture_on_driver(select: rows._DriverSelect, bound: Any) -> list[Any]:
        parameters = parameters_of(select, bound)
        capture(None, None, select.sql, tuple(parameters))
        return parameters

    admin = await make_admin(app)
    engine = app.state.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            headers = {"Authorization": f"Bearer {issue_token(app.state.settings, admin).token}"}
            with patch.object(rows._DriverSelect, "parameters", capture_on_driver):
                response = await client.get(path, params=params, headers=headers)
            assert response.status_code == 200, response.text
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [query] = statements
    return query


async def make_admin(app: FastAPI) -> User:
    async with app.state.database.sessionmaker() as session:
        email = f"explain-{uuid.uuid4().hex[:8]}@example.com"
        admin = await User.create(session, email=email, is_superuser=True)
        await session.commit()
        return admin
