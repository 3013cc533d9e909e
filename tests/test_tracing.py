"""OpenTelemetry traces (OTEL_EXPORTER_OTLP_ENDPOINT): one server span per request, with the
database and Supabase calls as its children; with the setting unset, nothing is installed."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from app.logging import RequestContextFilter, configure_logging
from app.main import create_app
from app.security import issue_token
from app.supabase.fake import FakeSupabase
from tests.conftest import (
    PROJECT_ROOT,
    UserFactory,
    asgi_client,
    delete_all_rows,
    make_settings,
    supabase_settings,
)
from tests.supabase_headers import EXCHANGE, bearer

COLLECTOR = "http://127.0.0.1:4318"


@pytest.fixture
async def traced(
    database_url: str, supabase_fake: FakeSupabase
) -> AsyncIterator[tuple[FastAPI, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    settings = supabase_settings(database_url, supabase_fake, OTEL_EXPORTER_OTLP_ENDPOINT=COLLECTOR)
    application = create_app(settings, span_exporter=exporter)
    async with application.router.lifespan_context(application):
        try:
            yield application, exporter
        finally:
            await delete_all_rows(application.state.database)


def children_of(span: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    assert span.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id]


async def test_an_exchange_is_one_server_span_with_database_and_supabase_children(
    traced: tuple[FastAPI, InMemorySpanExporter], supabase_fake: FakeSupabase
) -> None:
    application, exporter = traced
    token = supabase_fake.sign_in(supabase_fake.create_user("ada@example.com"))
    async with asgi_client(application) as http:
        answer = await http.get(EXCHANGE, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.name == "GET /auth/verify_supabase_token"
    assert server.attributes is not None
    assert server.attributes.get("http.route") == "/auth/verify_supabase_token"
    children = children_of(server, spans)
    database = [s for s in children if s.attributes and "db.system" in s.attributes]
    supabase = [
        s
        for s in children
        if s.attributes and supabase_fake.url in str(s.attributes.get("http.url", ""))
    ]
    assert len(database) >= 2, [s.name for s in children]  # the lookups and the insert
    assert len(supabase) == 1, [(s.name, s.attributes) for s in children]
    assert supabase[0].kind is SpanKind.CLIENT
    assert {s.context.trace_id for s in spans if s.context} == {server.context.trace_id}
    assert token not in str([dict(s.attributes or {}) for s in spans])


async def test_the_callers_read_is_a_database_span(
    traced: tuple[FastAPI, InMemorySpanExporter], make_user: UserFactory
) -> None:
    """Traced, the caller's read goes through the engine (not asyncpg's connection alone, which
    SQLAlchemy's instrumentation does not see): every authenticated request shows it."""
    application, exporter = traced
    user = await make_user("traced@example.com")
    token = issue_token(application.state.settings, user).token
    async with asgi_client(application) as http:
        assert (await http.get("/auth/me", headers=bearer(token))).status_code == 200
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    statements = [
        str(s.attributes.get("db.statement", ""))
        for s in children_of(server, spans)
        if s.attributes
    ]
    assert any("FROM users" in statement for statement in statements), statements


async def test_a_callers_trace_is_continued(traced: tuple[FastAPI, InMemorySpanExporter]) -> None:
    application, exporter = traced
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with asgi_client(application) as http:
        assert (await http.get("/", headers={"traceparent": parent})).status_code == 200
    [server] = exporter.get_finished_spans()
    assert server.context is not None and f"{server.context.trace_id:032x}" == trace_id


def is_ours(handler: logging.Handler) -> bool:
    return any(isinstance(f, RequestContextFilter) for f in handler.filters)


async def test_json_log_lines_carry_the_trace(
    database_url: str, supabase_fake: FakeSupabase
) -> None:
    exporter = InMemorySpanExporter()
    settings = supabase_settings(
        database_url, supabase_fake, OTEL_EXPORTER_OTLP_ENDPOINT=COLLECTOR, LOG_FORMAT="json"
    )
    application = create_app(settings, span_exporter=exporter)
    [handler] = [h for h in logging.getLogger("app").handlers if is_ours(h)]
    assert isinstance(handler, logging.StreamHandler)
    output = io.StringIO()
    previous = handler.setStream(output)
    try:
        async with (
            application.router.lifespan_context(application),
            asgi_client(application) as http,
        ):
            assert (await http.get("/", headers={"X-Request-ID": "traced-1"})).status_code == 200
    finally:
        handler.setStream(previous)
        configure_logging("INFO")  # back to text for the tests after
    [server] = exporter.get_finished_spans()
    assert server.context is not None
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    [access] = [line for line in lines if line.get("request_id") == "traced-1"]
    assert access["trace_id"] == f"{server.context.trace_id:032x}"
    assert access["span_id"] == f"{server.context.span_id:016x}"


async def test_health_and_metrics_are_not_traced(
    traced: tuple[FastAPI, InMemorySpanExporter],
) -> None:
    application, exporter = traced
    async with asgi_client(application) as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200
    assert exporter.get_finished_spans() == ()


def test_without_the_setting_nothing_of_tracing_is_installed(tmp_path: Path) -> None:
    """In a fresh process: the app built and serving, and no instrumentation, no tracer
    provider, not even their modules imported."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'megapolis.db'}"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        import httpx
        from app.main import create_app
        from tests.conftest import make_settings

        async def main():
            app = create_app(make_settings({database_url!r}))
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    assert (await http.get("/readyz")).status_code == 200
                assert not hasattr(app.state.supabase.http, "_is_instrumented_by_opentelemetry")
                stack = app.middleware_stack
                assert "OpenTelemetry" not in type(stack).__name__, stack
            loaded = sorted(
                name for name in sys.modules
                if name.startswith(("opentelemetry.instrumentation", "opentelemetry.sdk.trace",
                                    "opentelemetry.exporter"))
            )
            print(loaded)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "APP_ENV": "test"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_settings_refuse_an_endpoint_that_is_not_a_url() -> None:
    with pytest.raises(ValidationError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        make_settings("sqlite+aiosqlite://", OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318")
