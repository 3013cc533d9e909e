"""Every operation of the OpenAPI schema has a short, unique `operationId` (`<tag>-<name>`, no
path or method in it) and a summary (contract: The front door), so the generated client
(clients/typescript/) gets usable names. app/router.py names them, for every router it includes."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from app.main import create_app
from app.router import include_routers
from tests.conftest import make_settings

OPERATION_ID = re.compile(r"^[a-z][a-z0-9_]*-[a-z][a-z0-9_]*$")
METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", METRICS_ENABLED=True))
    return app.openapi()


def test_every_operation_id_is_short_unique_and_tag_dash_name(document: dict[str, Any]) -> None:
    found = operations(document)
    assert len(found) >= 20  # users, posts, auth, health, /metrics
    ids = [operation["operationId"] for _, _, operation in found]
    assert [name for name, count in Counter(ids).items() if count > 1] == []
    for method, path, operation in found:
        name = operation["operationId"]
        assert OPERATION_ID.match(name), f"{method} {path}: {name}"
        assert name.split("-")[0] == operation["tags"][0], f"{method} {path}: {name}"
        # Not FastAPI's default (`read_me_api_v1_users_me_get`): no path in it.
        assert "api_v1" not in name and "__" not in name, name
    by_path = {(method, path): operation["operationId"] for method, path, operation in found}
    assert by_path["get", "/api/v1/users/me"] == "users-read_own_user"
    assert by_path["get", "/auth/me"] == "auth-read_me"
    assert by_path["post", "/api/v1/posts/"] == "posts-create_post"
    assert by_path["get", "/metrics"] == "operations-metrics"


def test_every_operation_has_a_summary(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        summary = operation.get("summary", "")
        assert summary.strip() and len(summary) <= 200, f"{method} {path}: {summary!r}"
    summaries = {
        operation["operationId"]: operation["summary"] for _, _, operation in operations(document)
    }
    # The docstring's first sentence, not FastAPI's title-cased function name.
    assert summaries["auth-read_me"] == "The user behind the API token"
    assert summaries["posts-list_posts"] == "List posts, newest first"


def test_a_route_without_a_tag_is_refused_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    untagged = APIRouter()

    @untagged.get("/untagged")
    async def untagged_route() -> None:
        """Nothing."""

    monkeypatch.setattr("app.router.ROUTERS", [(untagged, "")])
    with pytest.raises(ValueError, match=r"/untagged \(untagged_route\) has no tag"):
        include_routers(FastAPI(), make_settings("sqlite+aiosqlite:///:memory:"))


async def test_a_route_left_out_of_the_schema_needs_no_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hidden = APIRouter()

    @hidden.get("/hidden", include_in_schema=False)
    async def hidden_route() -> dict[str, str]:
        return {"ok": "yes"}

    monkeypatch.setattr("app.router.ROUTERS", [(hidden, "")])
    app = FastAPI()
    include_routers(app, make_settings("sqlite+aiosqlite:///:memory:", METRICS_ENABLED=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/hidden")).json() == {"ok": "yes"}
    assert app.openapi()["paths"] == {}
