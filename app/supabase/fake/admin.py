"""The fake Supabase's admin user endpoints, as GoTrue answers them:

- `GET /auth/v1/admin/users?page=N&per_page=M` (defaults 1 and 50): `{"users": [...], "aud":
  "authenticated"}`, newest first (`created_at` descending), soft-deleted users included (with
  `deleted_at`), and the headers `X-Total-Count` and `Link` (`rel="next"` while more pages
  follow, `rel="last"`); a bad number → 400 `validation_failed`;
- `GET /auth/v1/admin/users/{id}`: the user JSON, or 404 `user_not_found`.

Who may call them (GoTrue's `requireAdminCredentials`): the bearer token must be a valid JWT whose
`role` is `service_role` or `supabase_admin`: no `Authorization` → 401 `no_authorization`, a bad
token → 403 `bad_jwt`, another role (the `anon` key) → 403 `not_admin`. The gateway's `apikey`
check comes first (app/supabase/fake/server.py). A new key (`sb_secret_...`,
`sb_publishable_...`) sent as `apikey` without `Authorization` stands for the service-role or
anon token, which Supabase's gateway puts in its place.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

from app.supabase.fake.protocol import ADMIN_USERS_PATH, BEARER, Answer, gotrue_error, json_answer

if TYPE_CHECKING:
    from app.supabase.fake.server import FakeSupabase

ADMIN_ROLES = frozenset({"service_role", "supabase_admin"})
DEFAULT_PER_PAGE = 50


def users(fake: FakeSupabase, target: str, headers: dict[str, str]) -> Answer:
    refused = _refusal(fake, headers)
    if refused is not None:
        return refused
    split = urlsplit(target)
    if split.path.rstrip("/") != ADMIN_USERS_PATH:
        return _one_user(fake, split.path[len(ADMIN_USERS_PATH) + 1 :], headers)
    query = parse_qs(split.query)
    try:
        page = _number(query, "page", 1)
        per_page = _number(query, "per_page", DEFAULT_PER_PAGE)
    except ValueError as exc:
        return gotrue_error(headers, 400, "validation_failed", f"Bad Pagination Parameters: {exc}")
    with fake._lock:
        everyone = sorted(fake.users.values(), key=lambda user: user.created_at, reverse=True)
    start = (page - 1) * per_page
    listed = everyone[start : start + per_page]
    return json_answer(
        200,
        {"users": [user.to_json() for user in listed], "aud": "authenticated"},
        {
            "X-Total-Count": str(len(everyone)),
            "Link": _links(split.path, query, page, per_page, len(everyone)),
        },
    )


def _one_user(fake: FakeSupabase, user_id: str, headers: dict[str, str]) -> Answer:
    try:
        uuid.UUID(user_id)
    except ValueError:
        return gotrue_error(headers, 404, "validation_failed", "user_id must be an UUID")
    user = fake.users.get(user_id)
    if user is None:
        return gotrue_error(headers, 404, "user_not_found", "User not found")
    return json_answer(200, user.to_json())


def _refusal(fake: FakeSupabase, headers: dict[str, str]) -> Answer | None:
    authorization = headers.get("authorization")
    apikey = headers.get("apikey", "")
    if authorization is None and apikey in (fake.secret_key, fake.publishable_key):
        substitute = fake.service_role_key if apikey == fake.secret_key else fake.anon_key
        authorization = f"Bearer {substitute}"
    match = BEARER.fullmatch(authorization or "")
    if match is None:
        return gotrue_error(
            headers, 401, "no_authorization", "This endpoint requires a valid Bearer token"
        )
    try:
        claims = fake.verified_claims(match[1])
    except jwt.PyJWTError:
        return gotrue_error(
            headers, 403, "bad_jwt", "invalid JWT: unable to parse or verify signature"
        )
    if claims.get("role") not in ADMIN_ROLES:
        return gotrue_error(headers, 403, "not_admin", "User not allowed")
    return None


def _number(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values or values[0] == "":
        return default
    value = values[0]
    if not value.isdigit():
        raise ValueError(f'strconv.ParseUint: parsing "{value}": invalid syntax')
    return max(int(value), 1)


def _links(path: str, query: dict[str, list[str]], page: int, per_page: int, total: int) -> str:
    """GoTrue's `Link`: the next page while there is one, and the last page."""
    pages = -(-total // per_page)
    params = {name: values[0] for name, values in query.items()}

    def link(number: int, rel: str) -> str:
        return f'<{path}?{urlencode({**params, "page": str(number)})}>; rel="{rel}"'

    links = [link(page + 1, "next")] if pages > page else []
    return ", ".join([*links, link(pages, "last")])
