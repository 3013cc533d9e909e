"""The suite is hermetic (tests/hermetic.py): what a developer keeps in the project's `.env` or
exports in the shell never changes what a test sees."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ENV_FILE_VARIABLE, Settings
from tests.conftest import PROJECT_ROOT
from tests.hermetic import is_app_variable
from tests.processes import copy_project

# What the docs suggest putting in `.env` for `dev-supabase`, and more a developer might keep.
DEVELOPER_SETTINGS = {
    "SUPABASE_URL": "http://127.0.0.1:54321",
    "SUPABASE_PUBLISHABLE_KEY": "sb_publishable_dev-supabase_not-a-secret",
    "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_dev-supabase_not-a-secret",
    "LOG_FORMAT": "json",
    "RATE_LIMIT_EXCHANGE": "1/hour",
    "REDIS_URL": "redis://127.0.0.1:9/0",
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/nothing",
    "APP_ENV": "production",
    "JWT_SECRET_KEY": "a-developer-s-own-key-that-is-long-enough-0123",
}

# One test that starts a server with the fake Supabase's keys, one that runs in-process.
SELECTION = [
    "tests/test_supabase_exchange.py::test_the_base64_storage_header_over_real_http",
    "tests/test_supabase_exchange.py::TestTheUser::test_same_supabase_user_same_row",
]


def test_no_app_variable_reaches_the_tests() -> None:
    leaked = {name for name in os.environ if is_app_variable(name)}
    assert leaked == {ENV_FILE_VARIABLE, "APP_ENV", "JWT_SECRET_KEY"}
    assert os.environ[ENV_FILE_VARIABLE] == os.devnull
    assert os.environ["APP_ENV"] == "test"


@pytest.mark.processes
def test_a_developer_dotenv_and_shell_change_nothing(tmp_path: Path) -> None:
    """A copy of the project whose `.env` and environment hold a developer's settings: the tests
    that failed with them ("Supabase refused this server's credentials") pass."""
    project = copy_project(tmp_path / "project")
    shutil.copytree(
        PROJECT_ROOT / "tests", project / "tests", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in DEVELOPER_SETTINGS.items()))
    # The copy's .env is what the settings read, until the suite seals it off.
    shell = {name: value for name, value in os.environ.items() if not is_app_variable(name)}
    assert Settings(_env_file=project / ".env").SUPABASE_PUBLISHABLE_KEY
    shell |= {"REDIS_URL": "redis://127.0.0.1:9/1", "log_format": "json", "OTEL_SDK_DISABLED": "1"}
    shell |= {"SUPABASE_PUBLISHABLE_KEY": "sb_publishable_from-the-shell"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "not postgres",
            *SELECTION,
        ],
        cwd=project,
        env=shell,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.split("\n")[-2]
