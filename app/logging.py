"""Logging: every line carries the id of the request it belongs to and, once known, its user's id.

`LOG_FORMAT=text` (the default): one readable line a record; `json`: one JSON object a line
(`app/observability/json_logs.py`).
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from app.observability.json_logs import JsonFormatter


@dataclass(slots=True)
class RequestLogContext:
    """What the log lines of one request say about it. Mutable and shared: the caller's id set
    by a dependency is seen by the access line, whatever task or thread set it."""

    request_id: str
    user_id: int | None = None


request_log_context: ContextVar[RequestLogContext | None] = ContextVar(
    "request_log_context", default=None
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def identify_user(user_id: int) -> None:
    """Name the caller in the log lines of the current request (the access line included)."""
    context = request_log_context.get()
    if context is not None:
        context.user_id = user_id


class Formatter(logging.Formatter):
    """The standard formatter, with the timestamp text made once per second rather than once
    per line (the access log writes a line per request)."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._text},{int(record.msecs):03d}"


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = request_log_context.get()
        if context is None:
            record.request_id = "-"
            record.user_id = None
        else:
            record.request_id = context.request_id
            record.user_id = context.user_id
        return True


def configure_logging(level: str, log_format: Literal["text", "json"] = "text") -> None:
    """Give the `app` loggers one handler that prints the request id, in `log_format`
    (idempotent: called again, it only changes the level and the format)."""
    # Fields nobody prints here, each costly to gather on every record (Python's logging HOWTO,
    # "Optimization"): caller's file and line, thread and process names.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logger = logging.getLogger("app")
    logger.setLevel(level.upper())
    formatter = JsonFormatter() if log_format == "json" else Formatter(TEXT_FORMAT)
    for handler in logger.handlers:
        if any(isinstance(f, RequestContextFilter) for f in handler.filters):
            handler.setFormatter(formatter)
            return
    handler = logging.StreamHandler()
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
