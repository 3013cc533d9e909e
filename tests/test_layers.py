"""The layering rules of the README's "Architecture & development guidelines", each checked on
the code as it is (a generated resource included):

1. each resource is one file, named after it, in each of `models/`, `schemas/`, `services/` and
   `routes/`;
2. the data layer (`app/models/`, `app/db/`) imports without FastAPI or Starlette: models and
   the database code are usable from the CLI, scripts and jobs, and never reach for a request;
3. models subclass `CRUDMixin` and `Base`; their helpers flush, never commit, and never raise
   HTTP errors (`app/errors.py` is web code: rule 2 keeps it out);
4. a resource's request schemas (`…Request`) subclass `RequestSchema` (unknown fields are
   refused), its response schemas (`…Response`) `Schema` (they read ORM objects), its pages
   (`…Page`) `Page`;
5. services hold the rules, one static method per use case; they raise the named errors of
   `app/errors.py`, never FastAPI's or Starlette's directly;
6. routes never commit, and routes and services never open sessions of their own (the request's
   comes from `app/dependencies.py`);
7. each route module has one `APIRouter`, named `router`, and every one is registered in
   `app/router.py`;
8. every route handler has a docstring (the OpenAPI description), and each that answers a body
   declares its `response_model`;
9. middlewares are pure ASGI (no `BaseHTTPMiddleware`, no `@app.middleware`);
10. who may change a row is checked in one way: the `owner_or_superuser` dependency of
    `app/dependencies.py`, in the routes; services take the row already allowed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.db.base import Base, CRUDMixin
from app.router import ROUTERS
from app.schemas.base import Page, RequestSchema, Schema
from tests.conftest import PROJECT_ROOT

APP = PROJECT_ROOT / "app"
WEB = {"fastapi", "starlette"}


def modules(package: str) -> list[Path]:
    return sorted(path for path in (APP / package).glob("*.py") if path.stem != "__init__")


def resources() -> list[str]:
    """Every model module: `user`, `post`, and each generated resource."""
    return [path.stem for path in modules("models")]


def syntax(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def calls_to(tree: ast.AST, attribute: str) -> list[int]:
    """The lines that call `<anything>.<attribute>(...)`."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == attribute
    ]


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


# --- 1. one file per layer ------------------------------------------------------------------


def test_each_resource_has_one_file_in_each_layer() -> None:
    assert {"user", "post"} <= set(resources())
    for name in resources():
        for layer in ("schemas", "services", "routes"):
            assert (APP / layer / f"{name}.py").is_file(), f"app/{layer}/{name}.py is missing"


# --- 2. the data layer without the web layer ------------------------------------------------


def data_layer_modules() -> list[str]:
    names = []
    for package in ("models", "db"):
        for path in sorted((APP / package).glob("*.py")):
            name = f"app.{package}" if path.stem == "__init__" else f"app.{package}.{path.stem}"
            names.append(name)
    return names


# Imports each module in turn and names the first that brought in a web package.
FIRST_WEB_IMPORT = """
import importlib, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
    web = sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "starlette"))
    if web:
        print(module, "imports", web[0])
        break
"""


def first_web_import(*names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", FIRST_WEB_IMPORT, *names],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_data_layer_imports_without_the_web_layer() -> None:
    names = data_layer_modules()
    assert "app.models.user" in names and "app.db.database" in names
    result = first_web_import(*names)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_the_check_sees_a_web_import() -> None:
    """The check itself: a module that does import FastAPI is named."""
    result = first_web_import("app.models.user", "app.dependencies")
    assert result.stdout.startswith("app.dependencies imports fastapi"), result.stderr


# --- 3. models ------------------------------------------------------------------------------


def test_models_are_crud_models_that_never_commit() -> None:
    mapped = [mapper.class_ for mapper in Base.registry.mappers]
    assert {cls.__name__ for cls in mapped} >= {"User", "Post"}
    for cls in mapped:
        assert issubclass(cls, CRUDMixin), f"{cls.__name__} does not subclass CRUDMixin"
    for path in [*modules("models"), APP / "db" / "base.py"]:
        assert not calls_to(syntax(path), "commit"), f"{path.name} commits: services do"


# --- 4. schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", resources())
def test_a_resources_schemas_have_their_bases(name: str) -> None:
    module = importlib.import_module(f"app.schemas.{name}")
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and value.__module__ == module.__name__
    ]
    expected = {"Request": RequestSchema, "Response": Schema, "Page": Page}
    seen = set()
    for cls in classes:
        for suffix, base in expected.items():
            if cls.__name__.endswith(suffix):
                seen.add(suffix)
                assert issubclass(cls, base), f"{cls.__name__} must subclass {base.__name__}"
    assert seen == set(expected), f"app/schemas/{name}.py: no {set(expected) - seen} schema"


# --- 5. services ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", modules("services"), ids=lambda path: path.name)
def test_services_raise_named_errors_not_the_frameworks(path: Path) -> None:
    web = {name for name in imported_modules(syntax(path)) if name.split(".")[0] in WEB}
    assert not web, f"{path.name} imports {sorted(web)}: raise the errors of app/errors.py"


@pytest.mark.parametrize("name", resources())
def test_a_resources_service_is_static_methods(name: str) -> None:
    module = importlib.import_module(f"app.services.{name}")
    services = [
        value
        for key, value in vars(module).items()
        if inspect.isclass(value) and key.endswith("Service")
    ]
    assert len(services) == 1, f"app/services/{name}.py: one `…Service` class"
    for attribute, value in vars(services[0]).items():
        if not attribute.startswith("_"):
            assert isinstance(value, staticmethod), f"{services[0].__name__}.{attribute}"


# --- 6. sessions and commits ----------------------------------------------------------------


@pytest.mark.parametrize("path", modules("routes"), ids=lambda path: path.name)
def test_routes_never_commit(path: Path) -> None:
    assert not calls_to(syntax(path), "commit"), f"{path.name} commits: services do"


@pytest.mark.parametrize(
    "path", [*modules("routes"), *modules("services")], ids=lambda path: path.name
)
def test_routes_and_services_never_open_sessions(path: Path) -> None:
    tree = syntax(path)
    opened = calls_to(tree, "sessionmaker") + calls_to(tree, "read_sessionmaker")
    opened += [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"open_session", "AsyncSession"}
    ]
    assert not opened, f"{path.name} opens a session (lines {opened}): take SessionDep"


# --- 7 and 8. route modules -----------------------------------------------------------------


def route_modules() -> dict[str, ModuleType]:
    return {
        path.stem: importlib.import_module(f"app.routes.{path.stem}") for path in modules("routes")
    }


def test_every_route_module_has_one_router_registered() -> None:
    registered = {id(router) for router, _ in ROUTERS}
    for name, module in route_modules().items():
        routers = [value for value in vars(module).values() if isinstance(value, APIRouter)]
        assert len(routers) == 1, f"app/routes/{name}.py: one APIRouter"
        assert getattr(module, "router", None) is routers[0], f"app/routes/{name}.py: `router`"
        assert id(routers[0]) in registered, f"app/routes/{name}.py is not in app/router.py"


def test_every_handler_has_a_docstring_and_a_response_model() -> None:
    for name, module in route_modules().items():
        for route in module.router.routes:
            if not isinstance(route, APIRoute):
                continue
            where = f"app/routes/{name}.py {route.endpoint.__name__}"
            assert inspect.getdoc(route.endpoint), f"{where}: no docstring"
            response_class: Any = getattr(route.response_class, "value", route.response_class)
            if route.status_code != 204 and issubclass(response_class, JSONResponse):
                assert route.response_model is not None, f"{where}: no response_model"


# --- 9. middlewares -------------------------------------------------------------------------


def test_middlewares_are_pure_asgi() -> None:
    for path in APP.rglob("*.py"):
        tree = syntax(path)
        imported = imported_modules(tree)
        assert not any(name.endswith("BaseHTTPMiddleware") for name in imported), path
        decorated = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "middleware"
        ]
        assert not decorated, f"{path}: @app.middleware (lines {decorated})"


# --- 10. who may change a row ---------------------------------------------------------------


@pytest.mark.parametrize("name", resources())
def test_changing_a_row_goes_through_owner_or_superuser(name: str) -> None:
    """PATCH and DELETE of a row of every resource depend on `owner_or_superuser`."""
    module = importlib.import_module(f"app.routes.{name}")
    for route in module.router.routes:
        if not isinstance(route, APIRoute) or not (route.methods or set()) & {"PATCH", "DELETE"}:
            continue
        if "{" not in route.path:
            continue  # e.g. PATCH /users/me: the caller's own record
        calls = set()
        pending = list(route.dependant.dependencies)
        while pending:
            dependency = pending.pop()
            calls.add(getattr(dependency.call, "__qualname__", ""))
            pending += dependency.dependencies
        assert any(call.startswith("owner_or_superuser.") for call in calls), route.path
