"""Logging: every line carries the id of the request it belongs to."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


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


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str) -> None:
    """Give the `app` loggers one handler that prints the request id (idempotent)."""
    # Fields nobody prints here, each costly to gather on every record (Python's logging HOWTO,
    # "Optimization"): caller's file and line, thread and process names.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logger = logging.getLogger("app")
    logger.setLevel(level.upper())
    if not any(isinstance(f, RequestIdFilter) for h in logger.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.propagate = False
