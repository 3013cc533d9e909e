"""`MetricsMiddleware`: requests counted by method, route template and status, timed by method
and route template, and the number in flight.

Pure ASGI and cheap on purpose: it runs on every request. The labelled series of each (method,
route, status) are looked up once and kept (`_series`), so a request costs a dict lookup, a
counter increment and a histogram observation; the number in flight is a plain count, written to
its gauge only when scraped (`app/observability/gauges.py`).
"""

from __future__ import annotations

import time

from prometheus_client.metrics import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.middlewares.request_context import CLIENT_CLOSED_REQUEST
from app.observability.gauges import RequestsInFlight
from app.observability.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS
from app.observability.routes import RouteTemplates

# Any other method (a client may send any token) is counted as OTHER: labels stay bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

SeriesKey = tuple[str, str, int]  # method, route template, status


class MetricsMiddleware:
    """Outside `RequestContextMiddleware`, which answers every request whose client is still
    there: a request that ends without an answer is one whose client left first, counted as 499
    (nginx's "client closed request"), apart from the real 500s."""

    def __init__(self, app: ASGIApp, route_templates: RouteTemplates) -> None:
        self.app = app
        self.route_templates = route_templates
        self._series: dict[SeriesKey, tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        status = CLIENT_CLOSED_REQUEST

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            await send(message)  # raises when the connection is gone: then it stays 499
            if message["type"] == "http.response.start":
                status = message["status"]

        RequestsInFlight.count += 1
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            duration = time.perf_counter() - start
            RequestsInFlight.count -= 1
            method = scope["method"]
            if method not in KNOWN_METHODS:
                method = "OTHER"
            key = (method, self.route_templates.of(scope), status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = labelled_series(*key)
            requests, durations = series
            requests.inc()
            durations.observe(duration)


def labelled_series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    return (
        HTTP_REQUESTS.labels(method, route, str(status)),
        HTTP_REQUEST_DURATION.labels(method, route),
    )
