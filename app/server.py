"""The app as `manage.py run` serves it (`app.server:app`): the app of `app.main`, in a process
tuned to serve for days.

Garbage collector, measured with `make bench`: full collections over everything the app
allocated at start made the p99 tail (10× the median), and a young-generation pass every 700
allocations cost ~15 % of an authenticated read. So, once the app is built: freeze what exists
(it lives as long as the process) and collect young objects less often. Memory stays bounded:
cycles are still collected, only in larger batches. Tests and other hosts of `create_app()` keep
Python's defaults.
"""

from __future__ import annotations

import gc

from starlette.requests import ClientDisconnect
from uvicorn._types import ASGI3Application, ASGISendCallable, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.main import app

__all__ = ["HttpProtocol", "app"]


def tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


tune_garbage_collector()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), which `manage.py run` serves with, telling the
    request being served when its connection is gone.

    uvicorn marks only the newest request of a connection as disconnected. When a client
    pipelines two requests, then sends junk (or closes), uvicorn answers the junk with a 400 and
    closes the connection while the first request is still being served: that one then wrote to
    the closed transport (uvloop: `RuntimeError: ... the handler is closed`, an ERROR traceback
    per connection), and the access log recorded a status nobody received. Here a `send` on a
    connection that is gone marks its request disconnected (uvicorn then logs nothing more) and
    raises, as the ASGI spec (2.4) asks of a server: Starlette's `ClientDisconnect` rather than
    the spec's OSError, which this app answers as a database failure (app/exception_handlers.py).
    The access log records 499, client closed request (`RequestContextMiddleware`)."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        cycle.send = send_while_connected(cycle)  # type: ignore[method-assign,assignment]
        super()._start_asgi_task(cycle, app)


def send_while_connected(cycle: RequestResponseCycle) -> ASGISendCallable:
    send = cycle.send

    def lost() -> None:
        cycle.disconnected = True
        cycle.message_event.set()  # a `receive` waiting for more body gets `http.disconnect`

    async def send_while_connected(message: ASGISendEvent) -> None:
        if cycle.transport.is_closing():  # closed under it: uvicorn never closes mid-answer
            lost()
        if not cycle.disconnected:
            try:
                await send(message)
            except RuntimeError:
                if not cycle.transport.is_closing():
                    raise
                lost()  # closed while uvicorn waited for the client to read
        if cycle.disconnected:  # uvicorn wrote nothing
            raise ClientDisconnect()

    return send_while_connected
