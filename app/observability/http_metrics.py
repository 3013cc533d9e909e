"""`HttpMetrics`: requests counted by method, route template and status, timed by method and
route template, and the number in flight. `RequestContextMiddleware` (the one layer around every
answer, `app/middlewares/request_context.py`) calls it on every request when `METRICS_ENABLED`.

Cheap on purpose: the labelled series of each (method, route, status) are looked up once and
kept (`_series`), so a request costs a dict lookup, a counter increment and a histogram
observation; the number in flight is a plain count, written to its gauge only when scraped
(`app/observability/gauges.py`).
"""

from __future__ import annotations

from prometheus_client.metrics import Counter, Histogram

from app.observability.gauges import RequestsInFlight
from app.observability.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

# Any other method (a client may send any token) is counted as OTHER: labels stay bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

SeriesKey = tuple[str, str, int]  # method, route template, status


class HttpMetrics:
    # A request that ended without an answer: its client left first (nginx's "client closed
    # request"; not an HTTP status), counted apart from the real 500s.
    CLIENT_CLOSED_REQUEST = 499

    def __init__(self) -> None:
        self._series: dict[SeriesKey, tuple[Counter, Histogram]] = {}

    @staticmethod
    def start() -> None:
        """A request came in: one more in flight until `record`."""
        RequestsInFlight.count += 1

    def record(self, method: str, route: str, status: int, duration: float) -> None:
        """A request `start` saw is over."""
        RequestsInFlight.count -= 1
        if method not in KNOWN_METHODS:
            method = "OTHER"
        key = (method, route, status)
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
