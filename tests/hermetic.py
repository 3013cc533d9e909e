"""The suite is hermetic: nothing a developer keeps in the project's `.env` or exports in the shell
(`SUPABASE_URL`, `REDIS_URL`, `LOG_FORMAT`, ...) changes what a test sees, in the test process or
in any process a test starts (they inherit this environment). `tests/__init__.py` calls `seal()`, so
it happens before any test module or conftest imports `app.main`, whose module-level app reads
the settings."""

from __future__ import annotations

import os
from collections.abc import Mapping

# app.config fixes the dotenv file when it is imported: none, from the start.
os.environ["MEGAPOLIS_ENV_FILE"] = os.devnull

from app.config import ENV_FILE_VARIABLE, Settings

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"

# Read by the app, or the servers it runs, though they are not settings.
OTHER_VARIABLES = frozenset({"FORWARDED_ALLOW_IPS", "WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"})


def is_app_variable(name: str) -> bool:
    """Whether the app, or a server a test starts, would read this environment variable (settings
    match case-insensitively, as pydantic-settings reads them)."""
    upper = name.upper()
    return (
        upper in Settings.model_fields
        or upper in OTHER_VARIABLES
        or upper.startswith(("OTEL_", "UVICORN_"))
        or upper == ENV_FILE_VARIABLE
    )


def hermetic_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without anything set for the app, plus the test settings and no `.env` file."""
    kept = {name: value for name, value in environ.items() if not is_app_variable(name)}
    return kept | {ENV_FILE_VARIABLE: os.devnull, "APP_ENV": "test", "JWT_SECRET_KEY": TEST_SECRET}


def seal() -> None:
    clean = hermetic_environment(os.environ)
    os.environ.clear()
    os.environ.update(clean)
