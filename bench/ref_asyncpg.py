"""R2: bare FastAPI that checks an HS256 bearer token with PyJWT and reads one user by primary
key with a raw asyncpg pool: the limit of an authenticated read on this stack."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import jwt
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

SECRET = os.environ["JWT_SECRET_KEY"]
DSN = os.environ["BENCH_ASYNCPG_DSN"]
pool: Any = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(DSN, min_size=10, max_size=10)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)
bearer = HTTPBearer()


@app.get("/users/me")
async def me(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> dict[str, Any]:
    try:
        claims = jwt.decode(credentials.credentials, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "Invalid token") from exc
    row = await pool.fetchrow(
        "SELECT id, email, full_name, is_active, is_superuser FROM users WHERE id = $1",
        int(claims["sub"]),
    )
    if row is None or not row["is_active"]:
        raise HTTPException(401, "Inactive")
    return dict(row)
