"""`LOG_FORMAT=json`: one JSON object a line, for log collectors (Loki, Elasticsearch, Cloud
Logging...).

Every line: `time` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`, `request_id`
(null outside a request), `user_id` once the caller is known; the access line (`app.access`) adds
`method`, `route`, `path`, `status`, `duration_ms`; an error adds `exception` (the traceback);
with tracing on, `trace_id` and `span_id`.
Only these fields are written: whatever else a library attaches to a record stays out of the log.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# The access line's fields (app/middlewares/request_context.py passes them as `extra`), and the
# trace's (app/observability/tracing.py).
OPTIONAL_FIELDS = ("method", "route", "path", "status", "duration_ms", "trace_id", "span_id")


class JsonFormatter(logging.Formatter):
    _second = -1
    _text = ""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        entry: dict[str, Any] = {
            "time": self.utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if request_id == "-" else request_id,
        }
        user_id = getattr(record, "user_id", None)
        if user_id is not None:
            entry["user_id"] = user_id
        for name in OPTIONAL_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def utc_time(self, record: logging.LogRecord) -> str:
        """`2026-11-30T04:43:31.123Z`; the text up to the second is made once per second."""
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{int(record.msecs):03d}Z"


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """Uvicorn's own lines (start, stop, worker restarts) as JSON too: `manage.py run` hands
    this to Uvicorn when `LOG_FORMAT=json`. Its access log stays off (the app writes one)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
        },
    }
