"""FastAPI app entry point: `uvicorn app.main:app`, or `create_app(settings)` in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from app import api_docs
from app.admin.site import install_admin
from app.config import Settings, get_settings
from app.db.database import Database
from app.exception_handlers import install_exception_handlers
from app.logging import configure_logging
from app.middlewares import RequestContextMiddleware, RequestLimitsMiddleware
from app.middlewares.body_gate import BodyGate
from app.middlewares.request_limits import BodyLimits
from app.observability.http_metrics import HttpMetrics
from app.observability.lifespan import observing
from app.observability.routes import RouteTemplates
from app.observability.tracing import install_tracing
from app.rate_limit.limiter import create_rate_limiter
from app.router import include_routers
from app.schemas.errors import document_common_errors
from app.supabase.client import SupabaseAuth, create_http_client

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter


def create_app(
    settings: Settings | None = None, *, span_exporter: SpanExporter | None = None
) -> FastAPI:
    """`span_exporter`: where spans go instead of OTLP, when tracing is on (tests)."""
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database = Database(settings)
        # One shared HTTP client (one connection pool) for every call to Supabase.
        app.state.supabase = SupabaseAuth(settings, create_http_client(settings))
        # Rate-limit counters: one Redis connection pool (REDIS_URL) or this process's memory.
        app.state.rate_limiter = create_rate_limiter(settings)
        try:
            async with observing(app, settings, tracing):
                yield
        finally:
            await app.state.rate_limiter.aclose()
            await app.state.supabase.aclose()
            await app.state.database.dispose()

    # Swagger UI and ReDoc come from app/api_docs.py, with assets the app serves itself.
    app = FastAPI(
        title="Megapolis API", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    api_docs.install(app)
    include_routers(app, settings)
    install_admin(app, settings)  # /admin, for superusers (app/admin/)
    document_common_errors(app)
    install_exception_handlers(app)
    # OpenTelemetry only with OTEL_EXPORTER_OTLP_ENDPOINT (None otherwise; nothing installed).
    tracing = install_tracing(app, settings, span_exporter)

    # Innermost first. The limits inside CORS, so a browser can read a 413/414/431.
    app.add_middleware(
        RequestLimitsMiddleware,
        body_limits=body_limits(settings),
        body_gate=BodyGate(app.router.routes),
        allowed_hosts=settings.ALLOWED_HOSTS,
    )
    # Outermost, one layer: every answer (CORS refusals, 4xx from the limits, the last-resort
    # 500) carries X-Request-ID and the security headers, is logged, and is counted in the
    # metrics when METRICS_ENABLED (without them, requests pay nothing for metrics). CORS
    # (Starlette's middleware) runs inside it, for requests with an Origin header.
    docs_paths = (*api_docs.PATHS, app.openapi_url)
    app.add_middleware(
        RequestContextMiddleware,
        route_templates=RouteTemplates(app.router.routes),
        docs_paths=docs_paths,
        metrics=HttpMetrics() if settings.METRICS_ENABLED else None,
        cors={
            "allow_origins": settings.cors_origins,
            "allow_methods": ["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            # "*" lets the preflight allow Authorization, Content-Type and sb-<ref>-auth-token(.N).
            "allow_headers": ["*"],
            "expose_headers": ["X-Request-ID", "Retry-After"],
            "max_age": 600,
        },
    )
    return app


def body_limits(settings: Settings) -> BodyLimits:
    return BodyLimits(
        max_body_bytes=settings.MAX_BODY_BYTES,
        max_inflight_body_bytes=settings.MAX_INFLIGHT_BODY_BYTES,
        max_client_inflight_body_bytes=settings.MAX_CLIENT_INFLIGHT_BODY_BYTES,
        max_reserved_inflight_body_bytes=settings.MAX_RESERVED_INFLIGHT_BODY_BYTES,
        body_timeout_seconds=settings.BODY_TIMEOUT_SECONDS,
        min_body_data_rate=settings.MIN_BODY_DATA_RATE,
        body_rate_grace_seconds=settings.BODY_RATE_GRACE_SECONDS,
    )


app = create_app()
