"""Swagger UI (`/docs`) and ReDoc (`/redoc`) served from the package's own assets, so they work
without internet: FastAPI's defaults load them from a CDN, and the pages stay blank offline.

The assets are the bundles `fastapi-offline` ships (Swagger UI, Apache-2.0; ReDoc, MIT), served
under ASSETS_PATH; the pages are FastAPI's own HTML, pointed at them.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs/assets"
ASSETS_DIRECTORY = Path(fastapi_offline.__file__).resolve().parent / "static"
# The pages and their assets: the security headers a page of scripts can live with.
PATHS = (SWAGGER_UI_PATH, OAUTH2_REDIRECT_PATH, REDOC_PATH, ASSETS_PATH + "/")


def install(app: FastAPI) -> None:
    """The pages, as routes of the app itself outside the schema (as FastAPI adds its own), and
    the bundles; FastAPI's own /docs and /redoc must be off (`docs_url=None, redoc_url=None`)."""
    app.add_route(SWAGGER_UI_PATH, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_PATH, swagger_ui_oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_PATH, redoc, include_in_schema=False)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIRECTORY), name="docs-assets")


def _rooted(request: Request, path: str) -> str:
    """`path` under the app's root path (behind a proxy that serves the API under a prefix)."""
    return f"{request.scope.get('root_path', '')}{path}"


async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_rooted(request, request.app.openapi_url),
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=_rooted(request, OAUTH2_REDIRECT_PATH),
        swagger_js_url=_rooted(request, f"{ASSETS_PATH}/swagger-ui-bundle.js"),
        swagger_css_url=_rooted(request, f"{ASSETS_PATH}/swagger-ui.css"),
        swagger_favicon_url=_rooted(request, f"{ASSETS_PATH}/favicon.png"),
        swagger_ui_parameters=request.app.swagger_ui_parameters,
    )


async def swagger_ui_oauth2_redirect(_: Request) -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=_rooted(request, request.app.openapi_url),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_rooted(request, f"{ASSETS_PATH}/redoc.standalone.js"),
        redoc_favicon_url=_rooted(request, f"{ASSETS_PATH}/favicon.png"),
        with_google_fonts=False,
    )
