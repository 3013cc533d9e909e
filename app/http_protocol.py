"""The HTTP/1.1 protocol `manage.py run` serves with: uvicorn's (httptools), telling the request
being served when its connection is gone.

uvicorn marks only the newest request of a connection as disconnected. When a client pipelines
two requests, then sends junk (or closes), uvicorn answers the junk with a 400 and closes the
connection while the first request is still being served: that one then wrote to the closed
transport (uvloop: `RuntimeError: ... the handler is closed`, an ERROR traceback per
connection), and the access log recorded a status nobody received. Here a `send` on a connection
that is gone marks its request disconnected (uvicorn then logs nothing more) and raises, as the
ASGI spec (2.4) asks of a server: Starlette's `ClientDisconnect` rather than the spec's OSError,
which this app answers as a database failure (app/exception_handlers.py). The access log records
499, client closed request (`RequestContextMiddleware`).

The watching `send` is handed to the app, never stored on uvicorn's request cycle: the cycle
holding a function that holds the cycle is a reference cycle, and it kept each request's objects
(scope, headers, answer: 24 objects a request) alive until the garbage collector, which
app/server.py runs rarely, found them. That cost `GET /` about 11 µs a request over HTTP
(docs/performance.md, "2026-12-08, later"); `tests/test_request_garbage.py` keeps every
request free of cycles.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from uvicorn._types import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class HttpProtocol(HttpToolsProtocol):
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        send = send_while_connected(cycle)

        async def app_sending_while_connected(
            scope: Scope, receive: ASGIReceiveCallable, _: ASGISendCallable
        ) -> None:
            await app(scope, receive, send)

        super()._start_asgi_task(cycle, app_sending_while_connected)


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
