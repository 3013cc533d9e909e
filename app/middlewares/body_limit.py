"""Refuse request bodies over a size limit with 413, before the app reads them into memory."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Methods whose bodies the app never reads: passed through untouched.
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def json_error(status: int, detail: str) -> tuple[Message, Message]:
    """A complete `{"detail": ...}` answer that closes the connection (the rest of the request
    may still be arriving)."""
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodySizeLimitMiddleware:
    """A declared `Content-Length` over the limit is refused at once. Otherwise the body is read
    here, up to the limit, before the app runs: a chunked body (no `Content-Length`) is refused
    with 413 as soon as it passes the limit, and the app never sees part of a body. (An error
    raised while FastAPI reads the body would become its generic 400.)"""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODILESS_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._refuse(send)
                    return
                break

        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending the whole body
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        body = b"".join(chunks)
        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as servers do

        await self.app(scope, replay_receive, send)

    async def _refuse(self, send: Send) -> None:
        start, body = json_error(413, f"Request body larger than {self.max_bytes} bytes")
        await send(start)
        await send(body)
