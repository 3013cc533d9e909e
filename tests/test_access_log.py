"""The access line's cheap path (app/logging.py): its record is one any handler or format can
take, like `Logger.makeRecord`'s, and the lines of one event-loop turn are written together,
none lost."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from app.logging import (
    ACCESS_MESSAGE,
    TEXT_FORMAT,
    AccessRecord,
    BatchedStreamHandler,
    Formatter,
    RequestContextFilter,
)
from app.observability.json_logs import JsonFormatter

FIELDS = {"method": "GET", "route": "/api/v1/users/{user_id}", "path": "/api/v1/users/7"}


def made_by_logging() -> logging.LogRecord:
    logger = logging.getLogger("app.access")
    args = ("GET", FIELDS["path"], 200, 1.25, "rid-1")
    extra: dict[str, object] = {**FIELDS, "status": 200, "duration_ms": 1.2}  # rounded
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 0, ACCESS_MESSAGE, args, None, extra=extra
    )


def access_record() -> AccessRecord:
    return AccessRecord("GET", FIELDS["route"], FIELDS["path"], 200, 1.25, "rid-1")


@pytest.mark.parametrize(
    "formatter", [Formatter(TEXT_FORMAT), JsonFormatter()], ids=["text", "json"]
)
def test_an_access_record_formats_as_one_made_by_logging(formatter: logging.Formatter) -> None:
    ours, theirs = access_record(), made_by_logging()
    assert set(vars(ours)) == set(vars(theirs))
    theirs.created, theirs.msecs = ours.created, ours.msecs
    for record in (ours, theirs):
        RequestContextFilter().filter(record)
    assert formatter.format(ours) == formatter.format(theirs)
    assert ours.getMessage() == f"GET {FIELDS['path']} 200 1.2ms rid=rid-1"
    assert 0 <= ours.created - theirs.created < 5


class CountingStream(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def batched_handler() -> tuple[BatchedStreamHandler, CountingStream]:
    stream = CountingStream()
    handler = BatchedStreamHandler()
    handler.setStream(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler, stream


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("app.test", logging.INFO, __file__, 0, message, None, None)


async def test_the_lines_of_one_loop_turn_are_written_together() -> None:
    handler, stream = batched_handler()
    for n in range(3):
        handler.handle(record(f"line {n}"))
    assert stream.getvalue() == ""  # not yet: at the end of this turn
    await asyncio.sleep(0)
    assert (stream.getvalue(), stream.writes) == ("line 0\nline 1\nline 2\n", 1)
    handler.handle(record("line 3"))
    handler.flush()  # what logging.shutdown() does at exit: nothing waits after it
    assert stream.getvalue().endswith("line 2\nline 3\n")


def test_outside_an_event_loop_a_line_is_written_at_once() -> None:
    handler, stream = batched_handler()
    handler.handle(record("from the CLI"))
    assert stream.getvalue() == "from the CLI\n"


def test_lines_left_by_a_loop_that_stopped_are_written_by_the_next_one() -> None:
    handler, stream = batched_handler()

    async def log(message: str) -> None:
        handler.handle(record(message))

    def log_and_stop() -> None:
        handler.handle(record("first"))  # its write is due on the next turn, never taken
        stopped.stop()

    stopped = asyncio.new_event_loop()
    try:
        stopped.call_soon(log_and_stop)
        stopped.run_forever()
    finally:
        stopped.close()
    assert stream.getvalue() == ""
    asyncio.run(log("second"))
    assert stream.getvalue() == "first\nsecond\n"
