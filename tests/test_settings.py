"""Configuration: URL mapping, secrets, CORS defaults, .env loading."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import (
    ENV_FILE_VARIABLE,
    ConfigurationError,
    Settings,
    development_secret,
    normalize_database_url,
)
from tests.conftest import PROJECT_ROOT
from tests.processes import copy_project

SECRET = "s" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test passes counts, not the harness's own environment."""
    for name in list(os.environ):
        if name.startswith(("JWT_", "SUPABASE_", "DATABASE_", "CORS_", "APP_ENV")):
            monkeypatch.delenv(name)


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgresql://u:p@h/d", "postgresql+asyncpg://u:p@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite+aiosqlite:///./x.db", f"sqlite+aiosqlite:///{PROJECT_ROOT / 'x.db'}"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
    ],
)
def test_database_url_forms(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected
    assert settings(DATABASE_URL=given, JWT_SECRET_KEY=SECRET).DATABASE_URL == expected


def test_default_database_is_embedded_sqlite_in_the_project() -> None:
    expected = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'megapolis.db'}"
    assert settings(JWT_SECRET_KEY=SECRET).DATABASE_URL == expected


def test_production_refuses_to_start_without_secret() -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET_KEY is not set"):
        settings(APP_ENV="production")


def test_short_secret_is_refused_in_every_environment() -> None:
    for env in ("production", "development", "test"):
        with pytest.raises(ConfigurationError, match="at least 32 bytes"):
            settings(APP_ENV=env, JWT_SECRET_KEY="short")


def test_production_accepts_a_long_secret() -> None:
    assert settings(APP_ENV="production", JWT_SECRET_KEY=SECRET).jwt_secret == SECRET


def test_development_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / ".secrets" / "jwt_secret_key"
    first = development_secret(path)
    assert len(first) >= 32
    assert development_secret(path) == first
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_development_secret_file_is_git_ignored() -> None:
    result = subprocess.run(
        ["git", "check-ignore", "-q", ".secrets/jwt_secret_key"], cwd=PROJECT_ROOT, check=False
    )
    assert result.returncode == 0


def test_cors_defaults_depend_on_environment() -> None:
    dev = settings(JWT_SECRET_KEY=SECRET)
    assert dev.cors_origins == [
        "http://localhost:3000",
        "http://localhost:5173",
        "http://localhost:4173",
        "http://127.0.0.1:5173",
        "http://127.0.0.1:4173",
    ]
    prod = settings(APP_ENV="production", JWT_SECRET_KEY=SECRET)
    assert prod.cors_origins == []
    custom = settings(JWT_SECRET_KEY=SECRET, CORS_ORIGINS=" https://a.example , https://b.example")
    assert custom.cors_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    ("url", "mode", "expected"),
    [
        ("postgresql://u@pooler.supabase.com:6543/postgres", "auto", True),
        ("postgresql://u@h:5432/d?pgbouncer=true", "auto", True),
        ("postgresql://u@h:5432/d", "auto", False),
        ("postgresql://u@h:5432/d", "transaction", True),
        ("postgresql://u@h:6543/d", "session", False),
    ],
)
def test_transaction_pooler_detection(url: str, mode: str, expected: bool) -> None:
    configured = settings(DATABASE_URL=url, DATABASE_POOL_MODE=mode, JWT_SECRET_KEY=SECRET)
    assert configured.uses_transaction_pooler is expected


@pytest.mark.processes
def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    """The project's .env, read from elsewhere too; a .env in the working directory is not."""
    project = copy_project(tmp_path / "project")
    (project / ".env").write_text(
        f"JWT_SECRET_KEY={SECRET}\nJWT_EXPIRE_MINUTES=5\nSUPABASE_URL=https://fromfile.supabase.co\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("JWT_EXPIRE_MINUTES=7\n")
    code = (
        "from app.config import Settings; s = Settings(); "
        "print(s.JWT_EXPIRE_MINUTES, s.SUPABASE_URL, s.JWT_SECRET_KEY == 's' * 32)"
    )
    # The suite reads no .env (tests/hermetic.py); this test reads the copy's.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JWT_", "SUPABASE_")) and k != ENV_FILE_VARIABLE
    }
    env.update(PYTHONPATH=str(project), SUPABASE_URL="https://fromenv.supabase.co")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["5", "https://fromenv.supabase.co", "True"]


@pytest.mark.processes
def test_app_import_fails_in_production_without_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_")}
    env.update(APP_ENV="production")
    result = subprocess.run(
        [sys.executable, "-c", "import app.main"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "JWT_SECRET_KEY is not set" in result.stderr
