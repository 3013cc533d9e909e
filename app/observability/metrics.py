"""Every Prometheus metric the API exports, in one place (docs/operations.md lists them).

Defined once per process, in prometheus_client's default registry. Under `manage.py run
--workers N` each worker writes its values to files in `PROMETHEUS_MULTIPROC_DIR` and a scrape,
whichever worker answers it, reads every worker's (`app/observability/scrape.py`); gauges then
add up the live workers' values (`livesum`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No `*_created` series: the multiprocess mode cannot give them, and nobody here graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds. The API answers most requests in a few milliseconds; Supabase in tens to hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "megapolis_http_requests",
    "HTTP requests answered, by method, route template and status (499: the client left first).",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "megapolis_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS_IN_FLIGHT = Gauge(
    "megapolis_http_requests_in_flight",
    "HTTP requests being served.",
    multiprocess_mode="livesum",
)

DB_POOL_IN_USE = Gauge(
    "megapolis_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_IDLE = Gauge(
    "megapolis_db_pool_connections_idle",
    "Open database connections idle in the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "megapolis_db_pool_waiting",
    "Requests waiting for a database connection (none free, pool at its maximum).",
    multiprocess_mode="livesum",
)

SUPABASE_EXCHANGES = Counter(
    "megapolis_supabase_exchanges",
    "Supabase token exchanges (GET /auth/verify_supabase_token), by outcome.",
    ["outcome"],
)
SUPABASE_REQUEST_DURATION = Histogram(
    "megapolis_supabase_request_duration_seconds",
    "Calls to Supabase Auth, by call (user, jwks) and status (error: no answer).",
    ["call", "status"],
    buckets=LATENCY_BUCKETS,
)
