"""Application settings, from the environment and an optional `.env` file (environment wins)."""

from __future__ import annotations

import os
import re
import secrets
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from app.db import url as database_urls
from app.rate_limit.config import check_rate_limit, check_redis_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET_FILE = PROJECT_ROOT / ".secrets" / "jwt_secret_key"
MIN_SECRET_BYTES = 32
# Outside production: a front end's dev server (3000; Vite's dev server 5173 and `vite preview`
# 4173, examples/web/) on this machine.
DEFAULT_DEV_CORS_ORIGINS = [
    "http://localhost:3000",
    "http://localhost:5173",
    "http://localhost:4173",
    "http://127.0.0.1:5173",
    "http://127.0.0.1:4173",
]
SUPABASE_POOLER_PORT = 6543
# The dotenv file the settings read: the project's `.env`, or the file MEGAPOLIS_ENV_FILE names
# (`/dev/null`: none). The test suite sets it to /dev/null, so a developer's `.env` never changes
# what a test sees.
ENV_FILE_VARIABLE = "MEGAPOLIS_ENV_FILE"


def env_file() -> Path:
    return Path(os.environ.get(ENV_FILE_VARIABLE) or PROJECT_ROOT / ".env")


class AppEnv(str, Enum):
    development = "development"
    test = "test"
    production = "production"


class ConfigurationError(RuntimeError):
    """The settings cannot work; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        # The project's .env, wherever manage.py or the server is started from.
        env_file=env_file(),
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    APP_ENV: AppEnv = AppEnv.development
    LOG_LEVEL: str = "INFO"
    # "text": one readable line a record; "json": one JSON object a line (app/observability/).
    LOG_FORMAT: Literal["text", "json"] = "text"
    # GET /metrics (Prometheus text) and the middleware that counts requests; false removes both.
    METRICS_ENABLED: bool = True
    # OpenTelemetry traces over OTLP/HTTP to this base URL (e.g. http://collector:4318); unset:
    # nothing is instrumented (app/observability/tracing.py).
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = None

    # A relative SQLite path is relative to the project root (see app/db/url.py).
    DATABASE_URL: str = Field(default="sqlite+aiosqlite:///./megapolis.db", validate_default=True)
    DATABASE_POOL_SIZE: int = Field(default=10, ge=1)
    DATABASE_MAX_OVERFLOW: int = Field(default=5, ge=0)
    DATABASE_POOL_TIMEOUT: float = Field(default=5.0, gt=0)
    DATABASE_POOL_RECYCLE: int = Field(default=1800, ge=-1)
    DATABASE_CONNECT_TIMEOUT: float = Field(default=5.0, gt=0)
    DATABASE_STATEMENT_TIMEOUT: float = Field(default=10.0, gt=0)
    # Pooled connections idle longer than this are pinged before use (0: ping on every checkout,
    # i.e. SQLAlchemy's pool_pre_ping). See app/db/ping.py for why not always.
    DATABASE_PING_IDLE_SECONDS: float = Field(default=2.0, ge=0)
    # "transaction" turns prepared statements off for PgBouncer / Supabase's pooler (port 6543);
    # "auto" detects that port or `?pgbouncer=true` in the URL.
    DATABASE_POOL_MODE: Literal["auto", "session", "transaction"] = "auto"

    JWT_SECRET_KEY: str | None = None
    JWT_EXPIRE_MINUTES: int = Field(default=43200, ge=1)
    # Key rotation: the old key moves here, the new one to JWT_SECRET_KEY; tokens signed with an
    # old key keep working until they expire, new ones are signed with the new key.
    JWT_PREVIOUS_SECRET_KEYS: Annotated[list[str], NoDecode] = Field(default_factory=list)

    SUPABASE_URL: str | None = None
    SUPABASE_SERVICE_ROLE_KEY: str | None = None
    # The least privilege `/auth/v1/user` needs; used instead of the service-role key when set.
    SUPABASE_PUBLISHABLE_KEY: str | None = None
    SUPABASE_JWT_SECRET: str | None = None
    SUPABASE_VERIFY_MODE: Literal["remote", "jwks"] = "remote"
    SUPABASE_CONNECT_TIMEOUT: float = Field(default=3.0, gt=0)
    SUPABASE_READ_TIMEOUT: float = Field(default=5.0, gt=0)
    # Enables POST /auth/supabase/webhook: the bearer secret Supabase's Database Webhook sends.
    SUPABASE_WEBHOOK_SECRET: str | None = Field(default=None, min_length=32)

    CORS_ORIGINS: Annotated[list[str] | None, NoDecode] = None
    # Host names the API answers to (e.g. "api.example.com,*.example.com"); unset: any.
    ALLOWED_HOSTS: Annotated[list[str] | None, NoDecode] = None

    MAX_BODY_BYTES: int = Field(default=1_048_576, ge=1024)
    # What all request bodies being received or handled may hold together, per process (503
    # past it), and the seconds a body may take to arrive (408 past them).
    MAX_INFLIGHT_BODY_BYTES: int = Field(default=32 * 1_048_576, ge=1024)
    BODY_TIMEOUT_SECONDS: float = Field(default=20.0, gt=0)
    # One client's share of MAX_INFLIGHT_BODY_BYTES: per address (IPv6 per /64) and per signed-in
    # user, so that one client's stalled bodies leave the rest to everyone else. At least
    # MAX_BODY_BYTES (one whole body always fits).
    MAX_CLIENT_INFLIGHT_BODY_BYTES: int = Field(default=2 * 1_048_576, ge=1024)
    # After a grace period, a body must keep arriving at this average rate (bytes/s) or the
    # request is answered 408 (as ASP.NET Core Kestrel's MinRequestBodyDataRate: 240 after 5 s).
    MIN_BODY_DATA_RATE: int = Field(default=240, ge=1)
    BODY_RATE_GRACE_SECONDS: float = Field(default=5.0, gt=0)
    # Bodies of callers that proved a shared secret before sending them (the Supabase webhook)
    # have a budget of their own, which other clients' bodies cannot fill.
    MAX_RESERVED_INFLIGHT_BODY_BYTES: int = Field(default=4 * 1_048_576, ge=1024)

    # Rate limits (app/rate_limit/). With REDIS_URL the counters live in Redis, shared by every
    # worker and replica; without it each process counts on its own.
    REDIS_URL: str | None = None
    # Exchanges (GET /auth/verify_supabase_token) per client address, e.g. "60/minute".
    RATE_LIMIT_EXCHANGE: str = "60/minute"
    # Sign-in attempts at /admin/login per client address (each asks Supabase's password grant).
    RATE_LIMIT_ADMIN_LOGIN: str = "10/minute"

    @field_validator("LOG_FORMAT", mode="before")
    @classmethod
    def _lower_case_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("OTEL_EXPORTER_OTLP_ENDPOINT")
    @classmethod
    def _check_otlp_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlparse(value.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(
                "OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL, e.g. http://collector:4318"
            )
        return value.strip()

    @field_validator("REDIS_URL")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url("REDIS_URL", value)

    @field_validator("RATE_LIMIT_EXCHANGE", "RATE_LIMIT_ADMIN_LOGIN")
    @classmethod
    def _check_rate_limit(cls, value: str, info: ValidationInfo) -> str:
        return check_rate_limit(str(info.field_name), value)

    @field_validator("CORS_ORIGINS", "ALLOWED_HOSTS", "JWT_PREVIOUS_SECRET_KEYS", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("SUPABASE_URL")
    @classmethod
    def _check_supabase_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlparse(value.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("SUPABASE_URL must be an http(s) URL, e.g. https://<ref>.supabase.co")
        return value.strip()

    @field_validator(
        "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_PUBLISHABLE_KEY", "SUPABASE_WEBHOOK_SECRET"
    )
    @classmethod
    def _check_supabase_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        # It goes into an HTTP header: visible ASCII only. Either key generation (legacy JWT,
        # `sb_publishable_...` / `sb_secret_...`) is used as is, never parsed.
        if value is not None and not re.fullmatch(r"[!-~]+", value.strip()):
            raise ValueError(f"{info.field_name} must be printable ASCII without spaces")
        return value.strip() if value is not None else None

    @field_validator("DATABASE_URL")
    @classmethod
    def _use_async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        if self.JWT_SECRET_KEY is not None:
            if len(self.JWT_SECRET_KEY.encode()) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"JWT_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes; generate one with "
                    '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
                )
        elif self.APP_ENV is AppEnv.production:
            raise ConfigurationError(
                "JWT_SECRET_KEY is not set: APP_ENV=production needs a secret of at least "
                f"{MIN_SECRET_BYTES} bytes; generate one with "
                '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
            )
        else:
            self.JWT_SECRET_KEY = development_secret()
        for key in self.JWT_PREVIOUS_SECRET_KEYS:
            if len(key.encode()) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    "each key in JWT_PREVIOUS_SECRET_KEYS must be at least "
                    f"{MIN_SECRET_BYTES} bytes"
                )
        return self

    @property
    def jwt_secret(self) -> str:
        assert self.JWT_SECRET_KEY is not None  # set by _check_secret
        return self.JWT_SECRET_KEY

    @property
    def token_keys(self) -> tuple[str, ...]:
        """The keys a token may be signed with: the current one first, then older ones."""
        return (self.jwt_secret, *self.JWT_PREVIOUS_SECRET_KEYS)

    @property
    def cors_origins(self) -> list[str]:
        if self.CORS_ORIGINS is not None:
            return self.CORS_ORIGINS
        return [] if self.APP_ENV is AppEnv.production else DEFAULT_DEV_CORS_ORIGINS

    @property
    def database_url(self) -> URL:
        return make_url(self.DATABASE_URL)

    @property
    def uses_transaction_pooler(self) -> bool:
        if self.DATABASE_POOL_MODE != "auto":
            return self.DATABASE_POOL_MODE == "transaction"
        url = self.database_url
        return url.port == SUPABASE_POOLER_PORT or url.query.get("pgbouncer") == "true"

    @property
    def supabase_configured(self) -> bool:
        return bool(self.SUPABASE_URL)

    @property
    def supabase_api_key(self) -> tuple[str, str] | None:
        """(setting name, key) sent as `apikey` to `/auth/v1/user`: the publishable key when
        set (it is all that call needs), else the service-role key; None without either."""
        for name in ("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SERVICE_ROLE_KEY"):
            value = getattr(self, name)
            if value:
                return name, value
        return None


def normalize_database_url(value: str) -> str:
    """`postgres://` and `postgresql://` (what hosting providers hand out) mapped to asyncpg, a
    relative SQLite path made absolute against the project; ConfigurationError (one line saying
    what to set) for a URL that cannot work. See app/db/url.py."""
    try:
        return database_urls.normalize_database_url(value, PROJECT_ROOT)
    except database_urls.DatabaseURLError as exc:
        raise ConfigurationError(str(exc)) from None


def development_secret(path: Path = DEV_SECRET_FILE) -> str:
    """A random key made once and kept in a git-ignored file, so restarts and workers share it."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    candidate = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    candidate.write_text(secrets.token_urlsafe(48))
    candidate.chmod(0o600)
    try:
        # link() fails if another worker won the race; then everyone reads the winner's key.
        path.hardlink_to(candidate)
    except FileExistsError:
        pass
    finally:
        candidate.unlink(missing_ok=True)
    return path.read_text().strip()


class _AppEnvOnly(BaseSettings):
    model_config = Settings.model_config
    APP_ENV: str = "development"


def configured_app_env() -> str:
    """APP_ENV alone, read the way Settings reads it (environment, then `.env`), lower-cased: a
    refusal to run in production must not depend on the rest of the configuration being valid."""
    return _AppEnvOnly().APP_ENV.strip().lower()


@lru_cache
def get_settings() -> Settings:
    return Settings()
