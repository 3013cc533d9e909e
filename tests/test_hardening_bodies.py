"""Bodies that used to break the error answers (issue 7, section 1): JSON's non-finite numbers.

Python's `json` (and so FastAPI) reads `NaN`, `Infinity` and `-Infinity` although JSON has no
such values. The 422 echoed them back and its encoder refused them: a 500 with a traceback.
"""

from __future__ import annotations

import json
import math

import httpx
import pytest

from tests.conftest import AuthHeaders, UserFactory

USERS = "/api/v1/users/"
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity"]


def assert_strict_json_422(response: httpx.Response) -> list[dict[str, object]]:
    """A 422 whose body strict JSON parsers read (no NaN/Infinity tokens anywhere)."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"

    def refuse(token: str) -> float:
        raise AssertionError(f"non-finite number {token} in {response.text}")

    detail: list[dict[str, object]] = json.loads(response.text, parse_constant=refuse)["detail"]
    assert detail
    return detail


@pytest.mark.parametrize("number", NON_FINITE)
async def test_non_finite_number_in_a_field_is_422(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, number: bytes
) -> None:
    user = await make_user(full_name="Before")
    headers = {**auth(user), "content-type": "application/json"}
    for field in (b"full_name", b"email", b"is_active"):
        raw = b'{"' + field + b'": ' + number + b"}"
        detail = assert_strict_json_422(
            await client.patch(USERS + "me", headers=headers, content=raw)
        )
        # The value is named as it was sent, as text.
        assert detail[0]["input"] == number.decode(), detail
    admin = await make_user(is_superuser=True)
    admin_headers = {**auth(admin), "content-type": "application/json"}
    raw = b'{"email": "n@example.com", "full_name": ' + number + b"}"
    assert_strict_json_422(await client.post(USERS, headers=admin_headers, content=raw))
    unchanged = await client.get(USERS + "me", headers=auth(user))
    assert unchanged.json()["full_name"] == "Before"


@pytest.mark.parametrize("number", NON_FINITE)
async def test_bare_non_finite_body_is_422(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, number: bytes
) -> None:
    user = await make_user()
    headers = {**auth(user), "content-type": "application/json"}
    for raw in (number, b"[" + number + b", 1]", b'{"full_name": [' + number + b"]}"):
        assert_strict_json_422(await client.patch(USERS + "me", headers=headers, content=raw))
    assert_strict_json_422(await client.post("/api/v1/posts/", headers=headers, content=number))


def test_the_rendering_never_holds_a_non_finite_number() -> None:
    """The handler's encoder on its own: whatever the error holds, the body is strict JSON."""
    from app.exception_handlers import json_safe

    assert json_safe(math.nan) == "NaN"
    assert json_safe(math.inf) == "Infinity"
    assert json_safe(-math.inf) == "-Infinity"
    assert json_safe(1.5) == 1.5
