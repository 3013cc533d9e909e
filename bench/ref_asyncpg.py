"""R2: the same-work references for `make bench`: bare FastAPI + PyJWT + a raw asyncpg pool,
written the plainest way, answering the API's own paths with the work each route does.

Every authenticated route here does what the API does, no less: check the HS256 token with
PyJWT, read the caller by primary key (active, token not revoked), then the route's own work:

- `GET /auth/me`, `GET /api/v1/users/me`: the caller read only;
- `GET /api/v1/users/{id}`: the caller read, then the record (superuser, or the user itself);
- `GET /api/v1/users/`: the caller read (superuser), then a page by id (one row more than asked,
  to know whether there is a next page) and the bounded count (`count(*)` over at most 10,001
  rows: the API's `total`, exact up to 10,000, null above);
- `GET /api/v1/posts/`: the caller read, then a page of posts newest first and the bounded
  count, the same way;
- both lists by keyset when given the last row of the page before (`after_id`, and for posts
  `after_created_at`), as the API's `cursor` does: `WHERE (created_at, id) < ($1, $2)`;
- `PATCH /api/v1/users/me`: the caller read, then `UPDATE ... RETURNING`;
- `POST /api/v1/posts/`: the caller read, then `INSERT ... RETURNING`.

Each statement runs on its own (asyncpg's autocommit), so no BEGIN/COMMIT round trips: the
limit of each route on this stack, not a copy of how the API does it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import jwt
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

SECRET = os.environ["JWT_SECRET_KEY"]
DSN = os.environ["BENCH_ASYNCPG_DSN"]
pool: Any = None

USER_COLUMNS = (
    "id, email, supabase_id, full_name, is_active, is_superuser, security_stamp, "
    "created_at, updated_at"
)
POST_COLUMNS = "id, title, body, author_id, created_at, updated_at"


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(DSN, min_size=10, max_size=10)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)
bearer = HTTPBearer()


async def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> dict[str, Any]:
    try:
        claims = jwt.decode(credentials.credentials, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "Invalid token") from exc
    row = await pool.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", int(claims["sub"]))
    if row is None or not row["is_active"] or row["security_stamp"] != claims["stamp"]:
        raise HTTPException(401, "Invalid token")
    return public_user(row)


def public_user(row: Any) -> dict[str, Any]:
    user = dict(row)
    user.pop("security_stamp", None)
    return user


Caller = Annotated[dict[str, Any], Depends(current_user)]
Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=10_000)]
MAX_TOTAL = 10_000


async def page_answer(
    table: str, rows: Sequence[Any], limit: int, offset: int, keyset: bool, cursor: str
) -> dict[str, Any]:
    """The API's page: the rows, the bounded total (not counted on a last page by offset, as
    the API does), and whether there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    total: int | None
    if not keyset and not more and (rows or not offset):
        total = offset + len(rows)
    else:
        total = await pool.fetchval(
            f"SELECT count(*) FROM (SELECT id FROM {table} LIMIT {MAX_TOTAL + 1}) AS counted"
        )
    return {
        "items": [public_user(row) for row in rows],
        "total": total if total is not None and total <= MAX_TOTAL else None,
        "limit": limit,
        "offset": offset,
        "next_cursor": cursor if more else None,
    }


class UserUpdate(BaseModel):
    full_name: str | None = Field(default=None, max_length=255)


class PostCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = ""


@app.get("/auth/me")
async def auth_me(caller: Caller) -> dict[str, Any]:
    return {"user": {"id": caller["id"], "email": caller["email"]}}


@app.get("/api/v1/users/me")
async def users_me(caller: Caller) -> dict[str, Any]:
    return caller


@app.patch("/api/v1/users/me")
async def patch_me(data: UserUpdate, caller: Caller) -> dict[str, Any]:
    row = await pool.fetchrow(
        f"UPDATE users SET full_name = $1, updated_at = now() WHERE id = $2 "
        f"RETURNING {USER_COLUMNS}",
        data.full_name,
        caller["id"],
    )
    return public_user(row)


@app.get("/api/v1/users/")
async def users_list(
    caller: Caller, limit: Limit = 50, offset: Offset = 0, after_id: int | None = None
) -> dict[str, Any]:
    if not caller["is_superuser"]:
        raise HTTPException(403, "Superuser privileges required")
    if after_id is not None:
        rows = await pool.fetch(
            f"SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2",
            after_id,
            limit + 1,
        )
    else:
        rows = await pool.fetch(
            f"SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT $1 OFFSET $2", limit + 1, offset
        )
    cursor = str(rows[min(limit, len(rows)) - 1]["id"]) if rows else ""
    return await page_answer("users", rows, limit, offset, after_id is not None, cursor)


@app.get("/api/v1/users/{user_id}")
async def user_by_id(user_id: int, caller: Caller) -> dict[str, Any]:
    if user_id == caller["id"]:
        return caller
    if not caller["is_superuser"]:
        raise HTTPException(403, "You can only access your own user record")
    row = await pool.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
    if row is None:
        raise HTTPException(404, "User not found")
    return public_user(row)


@app.get("/api/v1/posts/")
async def posts_list(
    _: Caller,
    limit: Limit = 20,
    offset: Offset = 0,
    after_created_at: datetime | None = None,
    after_id: int | None = None,
) -> dict[str, Any]:
    keyset = after_created_at is not None and after_id is not None
    if keyset:
        rows = await pool.fetch(
            f"SELECT {POST_COLUMNS} FROM posts WHERE (created_at, id) < ($1, $2) "
            "ORDER BY created_at DESC, id DESC LIMIT $3",
            after_created_at,
            after_id,
            limit + 1,
        )
    else:
        rows = await pool.fetch(
            f"SELECT {POST_COLUMNS} FROM posts ORDER BY created_at DESC, id DESC "
            "LIMIT $1 OFFSET $2",
            limit + 1,
            offset,
        )
    last = rows[min(limit, len(rows)) - 1] if rows else None
    cursor = f"{last['created_at'].isoformat()}|{last['id']}" if last else ""
    return await page_answer("posts", rows, limit, offset, keyset, cursor)


@app.post("/api/v1/posts/", status_code=201)
async def post_create(data: PostCreate, caller: Caller) -> dict[str, Any]:
    row = await pool.fetchrow(
        f"INSERT INTO posts (title, body, author_id, created_at, updated_at) "
        f"VALUES ($1, $2, $3, now(), now()) RETURNING {POST_COLUMNS}",
        data.title,
        data.body,
        caller["id"],
    )
    return dict(row)
