"""OpenTelemetry traces, only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: one server span per
request (FastAPI), with a child span for each database statement (SQLAlchemy) and each call to
Supabase (httpx), exported over OTLP/HTTP to `<endpoint>/v1/traces` in batches.

Unset, nothing of OpenTelemetry is even imported: no middleware, no event listener, no wrapped
transport, nothing to slow a request down. `/healthz`, `/readyz` and `/metrics` are never
traced. Log lines carry the trace and span ids (`trace_id`, `span_id` in JSON).
The service is named `megapolis-api` unless `OTEL_SERVICE_NAME` says otherwise; the exporter
reads the other standard `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, TLS) itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE_NAME = "megapolis-api"
# Probes and scrapes: every few seconds each, and nothing to learn from their spans.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class UntracedPaths:
    """No span at all (not even the database's) for requests to `UNTRACED_PATHS`: the
    instrumentor's `excluded_urls` skips the server span only, and `/readyz` queries the
    database. Installed only with tracing on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in UNTRACED_PATHS:
            from opentelemetry.instrumentation.utils import suppress_instrumentation

            with suppress_instrumentation():
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


class TraceContextFilter(logging.Filter):
    """Puts the current span's `trace_id` and `span_id` on each log record (JSON lines show
    them): from a log line to its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        return True


def add_trace_ids_to_logs() -> None:
    """On the `app` loggers' handler (app/logging.py), once."""
    for handler in logging.getLogger("app").handlers:
        if not any(isinstance(f, TraceContextFilter) for f in handler.filters):
            handler.addFilter(TraceContextFilter())


class Tracing:
    """The app's tracer provider and what it instruments. Made by `install_tracing`."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    def instrument_app(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            # Regular expressions searched in `scheme://host/path`.
            excluded_urls=",".join(f"^[^/]*//[^/]*{path}$" for path in sorted(UNTRACED_PATHS)),
            # No span for each ASGI message: one per request, with its children.
            exclude_spans=["receive", "send"],
        )
        app.add_middleware(UntracedPaths)

    def instrument_clients(self, engine: AsyncEngine, http: httpx.AsyncClient) -> None:
        """The database engine and the Supabase HTTP client, once made (in the lifespan)."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine, tracer_provider=self.provider
        )
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=self.provider)

    async def aclose(self) -> None:
        """Remove the SQLAlchemy instrumentation (it is process-wide), then export the spans
        left, in a thread: a collector that does not answer must not stall the event loop."""
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().uninstrument()
        await asyncio.to_thread(self.provider.shutdown)


def install_tracing(
    app: FastAPI, settings: Settings, exporter: SpanExporter | None = None
) -> Tracing | None:
    """Trace `app` when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (None otherwise). `exporter`
    replaces the OTLP exporter, and spans go to it as each ends (tests)."""
    if not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    name = resource.attributes.get("service.name")
    if not isinstance(name, str) or name.startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    tracing.instrument_app(app)
    add_trace_ids_to_logs()
    return tracing
