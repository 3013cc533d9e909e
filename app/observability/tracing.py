"""OpenTelemetry traces, only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: one server span per
request (FastAPI), with a child span for each database statement (SQLAlchemy) and each call to
Supabase (httpx), exported over OTLP/HTTP to `<endpoint>/v1/traces` in batches.

Unset, nothing of OpenTelemetry is even imported: no middleware, no event listener, no wrapped
transport, nothing to slow a request down. `/healthz`, `/readyz` and `/metrics` are never traced.
The service is named `megapolis-api` unless `OTEL_SERVICE_NAME` says otherwise; the exporter
reads the other standard `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, TLS) itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE_NAME = "megapolis-api"
# Regular expressions searched in `scheme://host/path` (no query string).
UNTRACED_PATHS = ("^[^/]*//[^/]*/healthz$", "^[^/]*//[^/]*/readyz$", "^[^/]*//[^/]*/metrics$")


class Tracing:
    """The app's tracer provider and what it instruments. Made by `install_tracing`."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    def instrument_app(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=",".join(UNTRACED_PATHS),
            # No span for each ASGI message: one per request, with its children.
            exclude_spans=["receive", "send"],
        )

    def instrument_clients(self, engine: AsyncEngine, http: httpx.AsyncClient) -> None:
        """The database engine and the Supabase HTTP client, once made (in the lifespan)."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine, tracer_provider=self.provider
        )
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=self.provider)

    def shutdown(self) -> None:
        """Export what is left, and remove the SQLAlchemy instrumentation (process-wide)."""
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().uninstrument()
        self.provider.shutdown()


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
    return tracing
