"""The users API: every route × every kind of caller, validation, duplicates, pagination."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.fields import MAX_INT_ID
from tests.conftest import AuthHeaders, UserFactory, one_database

USERS = "/api/v1/users/"


@one_database
async def test_anonymous_is_refused_everywhere(client: httpx.AsyncClient) -> None:
    calls = [
        ("GET", USERS),
        ("POST", USERS),
        ("GET", USERS + "me"),
        ("PATCH", USERS + "me"),
        ("GET", USERS + "1"),
        ("PATCH", USERS + "1"),
        ("DELETE", USERS + "1"),
        ("GET", "/auth/me"),
    ]
    for method, path in calls:
        response = await client.request(
            method, path, json={} if method in ("POST", "PATCH") else None
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["detail"] == "Not authenticated"


async def test_me_returns_own_record(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user("me@example.com", full_name="Me Myself")
    response = await client.get(USERS + "me", headers=auth(user))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.id
    assert body["email"] == "me@example.com"
    assert body["full_name"] == "Me Myself"
    assert body["is_superuser"] is False and body["is_active"] is True
    assert body["supabase_id"] is None
    assert body["created_at"].endswith(("Z", "+00:00"))


async def test_patch_me_changes_name(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user("me@example.com")
    response = await client.patch(USERS + "me", headers=auth(user), json={"full_name": "New Name"})
    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "New Name"
    again = await client.get(USERS + "me", headers=auth(user))
    assert again.json()["full_name"] == "New Name"
    cleared = await client.patch(USERS + "me", headers=auth(user), json={"full_name": None})
    assert cleared.json()["full_name"] is None


async def test_user_cannot_change_own_email(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user("mine@example.com")
    for path in (USERS + "me", f"{USERS}{user.id}"):
        response = await client.patch(path, headers=auth(user), json={"email": "other@example.com"})
        assert response.status_code == 403
        assert "Only a superuser can change email" in response.json()["detail"]
    assert (await client.get(USERS + "me", headers=auth(user))).json()[
        "email"
    ] == "mine@example.com"


async def test_superuser_changes_emails(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user("admin@example.com", is_superuser=True)
    user = await make_user("old@example.com")
    moved = await client.patch(
        f"{USERS}{user.id}", headers=auth(admin), json={"email": "New@Example.COM"}
    )
    assert moved.status_code == 200 and moved.json()["email"] == "new@example.com"
    own = await client.patch(USERS + "me", headers=auth(admin), json={"email": "boss@example.com"})
    assert own.status_code == 200 and own.json()["email"] == "boss@example.com"


@pytest.mark.parametrize("field", ["is_superuser", "is_active"])
async def test_user_cannot_escalate_or_reactivate_itself(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, field: str
) -> None:
    user = await make_user()
    value = field == "is_superuser"
    for path in (USERS + "me", f"{USERS}{user.id}"):
        response = await client.patch(path, headers=auth(user), json={field: value})
        assert response.status_code == 403, response.text
    me = (await client.get(USERS + "me", headers=auth(user))).json()
    assert me["is_superuser"] is False and me["is_active"] is True


async def test_patch_rejects_unknown_fields(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    response = await client.patch(USERS + "me", headers=auth(user), json={"id": 999, "role": "x"})
    assert response.status_code == 422
    assert (await client.get(USERS + "me", headers=auth(user))).json()["id"] == user.id


async def test_patch_me_to_taken_email_is_409(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    await make_user("taken@example.com")
    user = await make_user(is_superuser=True)
    response = await client.patch(
        USERS + "me", headers=auth(user), json={"email": "TAKEN@example.com"}
    )
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


async def test_superuser_creates_user(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    response = await client.post(
        USERS, headers=auth(admin), json={"email": "  Fresh@Example.com ", "full_name": "Fresh"}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["email"] == "fresh@example.com"
    assert created["is_superuser"] is False
    fetched = await client.get(f"{USERS}{created['id']}", headers=auth(admin))
    assert fetched.status_code == 200 and fetched.json()["email"] == "fresh@example.com"


async def test_create_duplicate_email_is_409_case_insensitive(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    first = await client.post(USERS, headers=auth(admin), json={"email": "dup@example.com"})
    assert first.status_code == 201
    second = await client.post(USERS, headers=auth(admin), json={"email": "DUP@Example.com"})
    assert second.status_code == 409
    assert second.json() == {"detail": "A user with this email already exists"}


async def test_one_address_whichever_way_its_domain_is_written(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """Stored with the domain in IDNA ASCII: `boss@аррӏе.com` is `boss@xn--80ak6aa92e.com`."""
    admin = await make_user(is_superuser=True)
    created = await client.post(USERS, headers=auth(admin), json={"email": "Boss@АРРӀЕ.com"})
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "boss@xn--80ak6aa92e.com"
    again = await client.post(USERS, headers=auth(admin), json={"email": "boss@XN--80ak6aa92e.com"})
    assert again.status_code == 409
    moved = await client.patch(
        f"{USERS}{created.json()['id']}", headers=auth(admin), json={"email": "boss@straße.de"}
    )
    assert moved.json()["email"] == "boss@xn--strae-oqa.de"  # IDNA 2008: not strasse.de
    own = await client.patch(USERS + "me", headers=auth(admin), json={"email": "boss@аррӏе.com"})
    assert own.status_code == 200, own.text  # the address is free again
    assert own.json()["email"] == "boss@xn--80ak6aa92e.com"


async def test_concurrent_creates_of_one_email_give_one_201_and_one_409(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    headers = auth(admin)
    for attempt in range(3):
        email = f"race{attempt}@example.com"
        responses = await asyncio.gather(
            *(client.post(USERS, headers=headers, json={"email": email}) for _ in range(2))
        )
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    page = await client.get(USERS, headers=headers, params={"limit": 100})
    emails = [item["email"] for item in page.json()["items"]]
    assert sorted(e for e in emails if e.startswith("race")) == [
        "race0@example.com",
        "race1@example.com",
        "race2@example.com",
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email"},
        {"email": ""},
        {},
        {"email": "a@example.com", "full_name": ""},
        {"email": "a@example.com", "full_name": "x" * 256},
        {"email": "a@example.com", "is_superuser": "maybe"},
        {"email": "a@example.com", "unexpected": 1},
        {"email": "x" * 320 + "@example.com"},
    ],
)
async def test_create_validation_is_422(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, body: dict[str, object]
) -> None:
    admin = await make_user(is_superuser=True)
    response = await client.post(USERS, headers=auth(admin), json=body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)


async def test_create_with_malformed_json_is_422_not_500(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    headers = {**auth(admin), "content-type": "application/json"}
    # Bytes that are not UTF-8 cannot be parsed at all (400); the rest is JSON of the wrong
    # shape, or broken JSON that FastAPI reports as a validation error (422).
    for raw, status in ((b"{not json", 422), (b"\xff\xfe\x00", 400), (b"[]", 422), (b"null", 422)):
        response = await client.post(USERS, headers=headers, content=raw)
        assert response.status_code == status, (raw, response.status_code)
        assert "detail" in response.json()


async def test_regular_user_cannot_list_or_create(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    listing = await client.get(USERS, headers=auth(user))
    assert listing.status_code == 403
    creating = await client.post(USERS, headers=auth(user), json={"email": "x@example.com"})
    assert creating.status_code == 403
    assert creating.json()["detail"] == "Superuser privileges required"


async def test_pagination(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user("admin@example.com", is_superuser=True)
    for index in range(6):
        await make_user(f"page{index}@example.com")
    first = await client.get(USERS, headers=auth(admin), params={"limit": 3, "offset": 0})
    assert first.status_code == 200
    body = first.json()
    assert body["total"] == 7 and body["limit"] == 3 and body["offset"] == 0
    assert [u["email"] for u in body["items"]] == [
        "admin@example.com",
        "page0@example.com",
        "page1@example.com",
    ]
    last = (await client.get(USERS, headers=auth(admin), params={"limit": 3, "offset": 6})).json()
    assert [u["email"] for u in last["items"]] == ["page5@example.com"]
    beyond = (await client.get(USERS, headers=auth(admin), params={"offset": 1000})).json()
    assert beyond["items"] == [] and beyond["total"] == 7
    default = (await client.get(USERS, headers=auth(admin))).json()
    assert default["limit"] == 20 and len(default["items"]) == 7


async def test_every_page_is_its_slice_of_the_whole_list(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """A second check of `offset`, independent of the one above: every (limit, offset) window,
    including the ones that cross or pass the end, is that slice of the unpaginated list."""
    admin = await make_user(is_superuser=True)
    for index in range(4):
        await make_user(f"slice{index}@example.com")
    everyone = (await client.get(USERS, headers=auth(admin), params={"limit": 100})).json()
    ids = [user["id"] for user in everyone["items"]]
    assert len(ids) == everyone["total"] == 5 and len(set(ids)) == 5
    for limit in (1, 2, 3):
        for offset in range(7):
            params = {"limit": limit, "offset": offset}
            page = (await client.get(USERS, headers=auth(admin), params=params)).json()
            assert [user["id"] for user in page["items"]] == ids[offset : offset + limit], params
            assert (page["total"], page["limit"], page["offset"]) == (5, limit, offset)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": -1},
        {"offset": -1},
        {"limit": "ten"},
        {"offset": 10**30},
        {"limit": 10**30},
    ],
)
async def test_pagination_bounds_are_422(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, params: dict[str, Any]
) -> None:
    admin = await make_user(is_superuser=True)
    response = await client.get(USERS, headers=auth(admin), params=params)
    assert response.status_code == 422, response.text


async def test_other_users_record_is_403_for_every_method(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    other = await make_user(full_name="Other")
    missing_id = other.id + 1000
    for target in (other.id, missing_id):
        path = f"{USERS}{target}"
        assert (await client.get(path, headers=auth(user))).status_code == 403
        patched = await client.patch(path, headers=auth(user), json={"full_name": "Hacked"})
        assert patched.status_code == 403
        assert (await client.delete(path, headers=auth(user))).status_code == 403
    admin = await make_user(is_superuser=True)
    still = await client.get(f"{USERS}{other.id}", headers=auth(admin))
    assert still.json()["full_name"] == "Other"


async def test_user_reads_patches_and_deletes_itself_by_id(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    headers = auth(user)
    path = f"{USERS}{user.id}"
    assert (await client.get(path, headers=headers)).json()["id"] == user.id
    patched = await client.patch(path, headers=headers, json={"full_name": "Self"})
    assert patched.status_code == 200 and patched.json()["full_name"] == "Self"
    deleted = await client.delete(path, headers=headers)
    assert deleted.status_code == 204 and deleted.content == b""
    gone = await client.get(USERS + "me", headers=headers)
    assert gone.status_code == 401


async def test_superuser_manages_any_user(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    user = await make_user()
    path = f"{USERS}{user.id}"
    promoted = await client.patch(
        path, headers=auth(admin), json={"is_superuser": True, "full_name": "Promoted"}
    )
    assert promoted.status_code == 200
    assert promoted.json()["is_superuser"] is True
    deactivated = await client.patch(path, headers=auth(admin), json={"is_active": False})
    assert deactivated.json()["is_active"] is False
    assert (await client.get(USERS + "me", headers=auth(user))).status_code == 401
    assert (await client.delete(path, headers=auth(admin))).status_code == 204
    assert (await client.get(path, headers=auth(admin))).status_code == 404
    assert (await client.patch(path, headers=auth(admin), json={})).status_code == 404
    assert (await client.delete(path, headers=auth(admin))).status_code == 404


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", str(MAX_INT_ID + 1), "9" * 40, "1.5"])
async def test_bad_ids_are_422(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, bad_id: str
) -> None:
    admin = await make_user(is_superuser=True)
    response = await client.get(f"{USERS}{bad_id}", headers=auth(admin))
    assert response.status_code == 422, response.text


async def test_superuser_patch_to_taken_email_is_409(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    await make_user("first@example.com")
    second = await make_user("second@example.com")
    response = await client.patch(
        f"{USERS}{second.id}", headers=auth(admin), json={"email": "First@example.com"}
    )
    assert response.status_code == 409
    unchanged = await client.get(f"{USERS}{second.id}", headers=auth(admin))
    assert unchanged.json()["email"] == "second@example.com"


async def test_updated_at_moves_on_update(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    before = (await client.get(USERS + "me", headers=auth(user))).json()
    await asyncio.sleep(0.01)
    after = (await client.patch(USERS + "me", headers=auth(user), json={"full_name": "T"})).json()
    assert after["updated_at"] > before["updated_at"]
    assert after["created_at"] == before["created_at"]
