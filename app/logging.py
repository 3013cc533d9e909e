"""Logging: every line carries the id of the request it belongs to and, once known, its user's id.

`LOG_FORMAT=text` (the default): one readable line a record; `json`: one JSON object a line
(`app/observability/json_logs.py`).
"""

from __future__ import annotations

import asyncio
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


ACCESS_MESSAGE = "%s %s %d %.1fms rid=%s"


class AccessRecord(logging.LogRecord):
    """The access line's record (`app.access`, one per request), made for a fraction of what
    `Logger.makeRecord` costs: what that computes the same way for every access line (level
    name, source file, module) is copied from one record made at import; only the time and the
    request's fields are set per record. Handlers, filters and formatters see a `LogRecord`
    like any other."""

    def __init__(
        self, method: str, route: str, path: str, status: int, duration_ms: float, rid: str
    ) -> None:
        # Not LogRecord.__init__ (that is the point): the template holds every other attribute.
        self.__dict__.update(ACCESS_RECORD_TEMPLATE)
        created = time.time()
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0
        self.relativeCreated = TEMPLATE_RELATIVE_CREATED + (created - TEMPLATE_CREATED) * 1000
        self.args = (method, path, status, duration_ms, rid)
        self.method = method
        self.route = route
        self.path = path
        self.status = status
        self.duration_ms = round(duration_ms, 1)


_template = logging.LogRecord("app.access", logging.INFO, __file__, 0, ACCESS_MESSAGE, (), None)
# Threads and processes are never logged (configure_logging turns them off).
_template.__dict__.update(thread=None, threadName=None, process=None, processName=None)
ACCESS_RECORD_TEMPLATE = dict(_template.__dict__)
TEMPLATE_CREATED = _template.created
TEMPLATE_RELATIVE_CREATED = _template.relativeCreated


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that, in the event loop, writes the lines of one loop turn together:
    one `write` and one `flush` (a system call) for all the access lines of the requests that
    turn finished, rather than one each. Outside a running loop (the CLI, threads) each line is
    written at once. A line waits at most for the end of the current loop turn; `flush()` (and
    so `logging.shutdown()` at exit) writes what waits."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[str] = []
        self.waiting_on: asyncio.AbstractEventLoop | None = None  # whose turn will write them

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.stream.write(line)
                self.stream.flush()
                return
            if self.waiting and loop is not self.waiting_on:
                self.flush()  # another loop's lines: that loop may never turn again
            if not self.waiting:
                loop.call_soon(self.flush)
                self.waiting_on = loop
            self.waiting.append(line)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            if self.waiting:
                lines, self.waiting = self.waiting, []
                self.stream.write("".join(lines))
            super().flush()
        finally:
            self.release()


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
    handler = BatchedStreamHandler()
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
