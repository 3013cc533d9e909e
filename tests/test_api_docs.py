"""Swagger UI and ReDoc work offline: every asset their pages reference is served by the app
itself (app/api_docs.py), none by a CDN."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import one_database

PAGES = ["/docs", "/redoc"]


def references(html: str) -> list[str]:
    """What a browser would fetch: script sources, stylesheets, icons, and the schema."""
    found = re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", html)
    found += re.findall(r"""(?:url|spec-url)\s*[:=]\s*["']([^"']+\.json)["']""", html)
    return found


@one_database
@pytest.mark.parametrize("page", PAGES)
async def test_every_asset_of_the_page_comes_from_the_app(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", response.text), "a page that needs the internet"
    assets = references(response.text)
    assert any(asset.endswith(".js") for asset in assets), assets
    assert "/openapi.json" in assets, assets
    for asset in assets:
        assert asset.startswith("/"), asset
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 100, asset
        if asset.endswith(".js"):
            assert "javascript" in served.headers["content-type"], asset
        if asset.endswith(".css"):
            assert served.headers["content-type"].startswith("text/css"), asset


@one_database
async def test_the_bundles_are_swagger_ui_and_redoc(client: httpx.AsyncClient) -> None:
    swagger = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in swagger.text
    redoc = await client.get("/docs/assets/redoc.standalone.js")
    assert "Redoc" in redoc.text
    assert (await client.get("/docs/oauth2-redirect")).status_code == 200
    assert (await client.get("/docs/assets/nothing.js")).status_code == 404


@one_database
async def test_the_docs_are_not_in_the_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]
