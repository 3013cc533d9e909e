"""A psycopg connection whose every wait on the server is bounded (psycopg has no client-side
timeout of its own; asyncpg has `command_timeout`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import psycopg
from psycopg.abc import PQGen


class BoundedAsyncConnection(psycopg.AsyncConnection[Any]):
    """A psycopg connection that gives up on a server that stops answering.

    statement_timeout only helps while the server works; when it (or the network, or a pooler
    in front of it) hangs, psycopg would wait forever, and so would the request. Past
    `command_timeout` the socket is shut down, so the pending wait fails like a dropped
    connection would: the connection is then broken and SQLAlchemy discards it. (Cancelling the
    task instead would make psycopg try to cancel the query on the hung server, up to 10 s more.)
    """

    command_timeout: float | None = None

    @classmethod
    async def connect_bounded(
        cls, *args: Any, command_timeout: float, **kwargs: Any
    ) -> BoundedAsyncConnection:
        connection = await cls.connect(*args, **kwargs)
        connection.command_timeout = command_timeout
        return connection

    async def wait(self, gen: PQGen[Any], *args: Any, **kwargs: Any) -> Any:
        if self.command_timeout is None:
            return await super().wait(gen, *args, **kwargs)
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            self._shut_socket_down()

        timer = asyncio.get_running_loop().call_later(self.command_timeout, expire)
        try:
            return await super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if not expired:
                raise
            raise psycopg.OperationalError(
                f"the database did not answer within {self.command_timeout:g} s"
            ) from exc
        finally:
            timer.cancel()

    def _shut_socket_down(self) -> None:
        # Through a duplicate descriptor: shutdown() acts on the socket both share, and closing
        # the duplicate leaves libpq's own descriptor for libpq to close.
        with (
            contextlib.suppress(psycopg.Error, OSError),
            socket.socket(fileno=os.dup(self.pgconn.socket)) as duplicate,
        ):
            duplicate.shutdown(socket.SHUT_RDWR)
