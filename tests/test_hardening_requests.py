"""Request heads and schema conformance (issue 7, section 1, items 8 and 10): two
`Authorization` headers, a trailing newline in the path, a complete `Allow` on 405, strict
booleans, the answers every operation may give in the OpenAPI schema, and the rule of a name."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from app.fields import SINGLE_LINE_PATTERN, single_line, to_single_line
from app.schemas.base import RequestSchema
from app.supabase.fake import FakeSupabase
from tests.conftest import AuthHeaders, UserFactory

USERS = "/api/v1/users/"
EXCHANGE = "/auth/verify_supabase_token"


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    detail: str = response.json()["detail"]
    return detail


# --- 8. Two Authorization headers: refused on every endpoint ---


async def test_two_authorization_headers_are_400_on_api_routes(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    other = await make_user()
    own, someone_else = auth(admin)["Authorization"], auth(other)["Authorization"]
    for pair in ((own, someone_else), (someone_else, own), (own, own), (own, "Bearer junk")):
        headers = [("Authorization", pair[0]), ("authorization", pair[1])]
        for method, path in (("GET", "/auth/me"), ("GET", USERS + "me"), ("GET", USERS)):
            response = await client.request(method, path, headers=headers)
            assert "Authorization" in assert_error(response, 400)
        patch = await client.patch(USERS + "me", headers=headers, json={"full_name": "Changed"})
        assert_error(patch, 400)
        assert_error(await client.post("/auth/logout", headers=headers), 400)
    # One header still works, and nothing above changed anything.
    me = await client.get(USERS + "me", headers={"Authorization": own})
    assert me.status_code == 200 and me.json()["full_name"] is None


async def test_two_authorization_headers_are_400_on_the_exchange(
    supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
) -> None:
    first = supabase_fake.sign_in(supabase_fake.create_user("first@example.com"))
    second = supabase_fake.sign_in(supabase_fake.create_user("second@example.com"))
    headers = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
    assert_error(await supabase_client.get(EXCHANGE, headers=headers), 400)
    # Supabase was not asked: the request was refused before the route.
    assert not [call for call in supabase_fake.calls if call.path.endswith("/user")]
    alone = await supabase_client.get(EXCHANGE, headers={"Authorization": f"Bearer {second}"})
    assert alone.status_code == 200, alone.text
    assert alone.json()["user"]["email"] == "second@example.com"


# --- 10b. A trailing newline in the path reaches no route ---


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users/%0A",
        "/api/v1/users/me%0A",
        "/healthz%0A",
        "/readyz%0a",
        "/%0A",
        "/auth/me%0D",
    ],
)
async def test_a_path_with_a_control_character_is_404(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders, path: str
) -> None:
    admin = await make_user(is_superuser=True)
    response = await client.get(path, headers=auth(admin))
    assert assert_error(response, 404) == "Not Found"
    patched = await client.patch(path, headers=auth(admin), json={"full_name": "x"})
    assert_error(patched, 404)


# --- 10c. A 405 names every method the path has ---


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", USERS + "me", {"GET", "PATCH"}),
        ("POST", USERS + "me", {"GET", "PATCH"}),
        ("PUT", USERS + "1", {"GET", "PATCH", "DELETE"}),
        ("PUT", USERS, {"GET", "POST"}),
        ("PUT", "/api/v1/posts/1", {"GET", "PATCH", "DELETE"}),
        ("DELETE", "/healthz", {"GET"}),
        ("GET", "/auth/logout", {"POST"}),
    ],
)
async def test_405_lists_every_allowed_method(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path)
    assert_error(response, 405)
    listed = {name.strip() for name in response.headers["allow"].split(",")}
    assert allowed <= listed, listed
    assert method not in listed
    for name in listed - {"HEAD"}:  # and each one listed is answered by a route
        answered = await client.request(name, path)
        assert answered.status_code != 405, (name, path)


# --- 10a. Booleans are strict everywhere: request bodies and query parameters ---


def request_schemas() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [RequestSchema]
    while pending:
        model = pending.pop()
        found.append(model)
        pending.extend(model.__subclasses__())
    return found


def errors_of(model: type[BaseModel], name: str, value: object) -> list[Any]:
    """The validation errors of one field (the model's other required fields may be absent)."""
    try:
        model.model_validate({name: value})
    except ValidationError as exc:
        return [error for error in exc.errors() if error["loc"] == (name,)]
    return []


def test_every_boolean_field_of_a_request_schema_is_strict() -> None:
    import app.main  # noqa: F401  every route module, so every request schema, is imported

    checked = 0
    for model in request_schemas():
        for name, field in model.model_fields.items():
            schema = model.model_json_schema()["properties"][name]
            types = {option.get("type") for option in schema.get("anyOf", [schema])}
            if "boolean" not in types:
                continue
            checked += 1
            for loose in (0, 1, "yes", "off", "true", "1"):
                assert errors_of(model, name, loose), (model, name, loose)
            assert not errors_of(model, name, True), (model, field)
    assert checked >= 4  # is_active and is_superuser on create and update


async def test_loose_booleans_are_422_over_http(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    for loose in (0, 1, "yes", "off", "true"):
        patched = await client.patch(USERS + "me", headers=auth(admin), json={"is_active": loose})
        assert patched.status_code == 422, patched.text
        created = await client.post(
            USERS, headers=auth(admin), json={"email": "b@example.com", "is_superuser": loose}
        )
        assert created.status_code == 422, created.text
    listing = await client.get(USERS, headers=auth(admin))
    assert listing.json()["total"] == 1


async def test_no_query_parameter_takes_a_loose_boolean(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    """Query strings have no JSON booleans: a boolean parameter would accept "yes", "on", "1".
    Should one be added, it must refuse them (it is checked here as it appears)."""
    admin = await make_user(is_superuser=True)
    document = (await client.get("/openapi.json")).json()
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for parameter in operation.get("parameters", []):
                if parameter["schema"].get("type") != "boolean" or "{" in path:
                    continue
                for loose in ("yes", "on", "1", "off"):
                    params = {parameter["name"]: loose}
                    answer = await client.request(method, path, params=params, headers=auth(admin))
                    assert answer.status_code == 422, (path, parameter["name"], loose)


# --- 10d. The answers of the request limits are in the schema of every operation ---


async def test_every_operation_declares_the_limits_answers(client: httpx.AsyncClient) -> None:
    document: dict[str, Any] = (await client.get("/openapi.json")).json()
    operations = 0
    for methods in document["paths"].values():
        for method, operation in methods.items():
            operations += 1
            declared = set(operation["responses"])
            assert {"400", "414", "431"} <= declared, (method, operation["operationId"])
            if method not in ("get", "head", "options"):
                assert {"408", "413", "503"} <= declared, (method, operation["operationId"])
            for code in ("414", "431"):
                content = operation["responses"][code]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert operations >= 15


async def test_the_declared_limits_answers_are_given(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    long_url = await client.get("/healthz", params={"q": "a" * 9000})
    assert_error(long_url, 414)
    big_headers = await client.get("/healthz", headers={"X-Big": "b" * 70_000})
    assert_error(big_headers, 431)
    big_delete = await client.delete(USERS + "1", headers={"content-length": str(2**21)})
    assert_error(big_delete, 413)


# --- 10e. A name: what the schema's pattern allows is exactly what the API accepts ---

# Every character JSON Schema (ECMA-262) or Python calls whitespace, and a few that neither does.
CANDIDATES = [
    " ",
    "\t",
    "\xa0",
    "\u1680",
    "\u2000",
    "\u200a",
    "\u2028",
    "\u2029",
    "\u202f",
    "\u205f",
    "\u3000",
    "\ufeff",
    "\u200b",
    "\u180e",
    "\u200c",
    "\u200d",
    "\u2060",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
    "a",
]


def ecma_like(pattern: str) -> re.Pattern[str]:
    """The pattern as a JSON Schema validator (ECMA-262) reads it: there `\\s` also means
    U+FEFF, which Python's `\\s` does not."""
    return re.compile(pattern.replace(r"\s", r"\s\ufeff"))


def accepted(text: str) -> bool:
    try:
        single_line(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("character", CANDIDATES)
def test_name_rule_and_its_schema_pattern_agree(character: str) -> None:
    for text in (character, character * 3, f"{character}x{character}", f"x{character}"):
        in_schema = ecma_like(SINGLE_LINE_PATTERN).fullmatch(text) is not None
        assert re.fullmatch(SINGLE_LINE_PATTERN, text) is not None or not in_schema
        assert accepted(text) == in_schema, (repr(text), in_schema)


@pytest.mark.parametrize("character", CANDIDATES)
def test_text_from_elsewhere_is_made_to_pass_the_rule(character: str) -> None:
    """What `to_single_line` keeps (a Supabase user's `full_name`) is always accepted."""
    for text in (character, f"{character}Eve{character}", f"\x00E\u202eve{character}" * 200):
        kept = to_single_line(text, 255)
        assert kept is None or (accepted(kept) and len(kept) <= 255), repr(kept)
    assert to_single_line(" \u202eEve\u2028\u200b", 255) == "Eve"


async def test_whitespace_only_names_are_refused_as_the_schema_says(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user(full_name="Kept")
    for blank in (" ", "\u3000\xa0", "\ufeff", "\t "):
        response = await client.patch(USERS + "me", headers=auth(user), json={"full_name": blank})
        assert response.status_code == 422, response.text
    trimmed = await client.patch(USERS + "me", headers=auth(user), json={"full_name": " Ada "})
    assert trimmed.json()["full_name"] == "Ada"
