"""The data layer does not depend on the web layer: every module under app/models/ and app/db/
imports without FastAPI or Starlette, so models and the database code can be used from the CLI,
scripts and jobs, and a model never reaches for a request."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def data_layer_modules() -> list[str]:
    modules = []
    for package in ("models", "db"):
        for path in sorted((PROJECT_ROOT / "app" / package).glob("*.py")):
            name = f"app.{package}" if path.stem == "__init__" else f"app.{package}.{path.stem}"
            modules.append(name)
    return modules


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


def test_data_layer_imports_without_the_web_layer() -> None:
    modules = data_layer_modules()
    assert "app.models.user" in modules and "app.db.database" in modules
    result = subprocess.run(
        [sys.executable, "-c", FIRST_WEB_IMPORT, *modules],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_the_check_sees_a_web_import() -> None:
    """The check itself: a module that does import FastAPI is named."""
    result = subprocess.run(
        [sys.executable, "-c", FIRST_WEB_IMPORT, "app.models.user", "app.dependencies"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.startswith("app.dependencies imports fastapi"), result.stderr
