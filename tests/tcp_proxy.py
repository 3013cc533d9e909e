"""A small threaded TCP proxy for fault-injection tests (127.0.0.1 only).

    with TCPProxy(upstream_port=5432) as proxy:   # listens on 127.0.0.1:proxy.port
        proxy.cut()        # close every connection and refuse new ones (DB down)
        proxy.stall()      # accept connections and hold every byte (DB hung / network black hole)
        proxy.restore()    # forward again, on the same port

It uses plain threads, not asyncio, so it works the same for an app in the test's event loop,
a uvicorn server in a thread, or a server in a subprocess.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

_POLL_SECONDS = 0.05


class TCPProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self._lock = threading.Lock()
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> TCPProxy:
        self._closed.clear()
        self._listen()
        return self

    def close(self) -> None:
        """Stop for good: no listener, no connections, all threads joined."""
        self._closed.set()
        self._forwarding.set()
        self._stop_listening()
        self._drop_connections()
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> TCPProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- faults ---------------------------------------------------------------------------

    def cut(self) -> None:
        """The database is down: current connections are closed, new ones are refused."""
        self._stop_listening()
        self._drop_connections()

    def stall(self) -> None:
        """The database hangs: connections are accepted (and kept) but no byte gets through,
        either way, on new or existing connections, until `restore()`."""
        self._forwarding.clear()
        if self._listener is None:
            self._listen()

    def restore(self) -> None:
        """Forward again: listen on the same port if it was cut, release held bytes if stalled."""
        if self._listener is None:
            self._listen()
        self._forwarding.set()

    @property
    def open_sockets(self) -> int:
        """Client and server sockets the proxy currently holds open."""
        with self._lock:
            return len(self._sockets)

    # -- internals ------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(_POLL_SECONDS)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = self._spawn(self._accept_loop, listener)

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            # The port is free (and refuses) once the accept loop has let go of the socket.
            if self._accept_thread is not None:
                self._accept_thread.join(timeout=5)
                self._accept_thread = None

    def _drop_connections(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _hard_close(sock)

    def _spawn(self, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._closed.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed
            client.settimeout(None)
            self.accepted += 1
            self._track(client)
            self._spawn(self._connect_upstream, client)

    def _connect_upstream(self, client: socket.socket) -> None:
        # A stalled proxy holds new connections before even reaching the server.
        if not self._wait_forwarding(client):
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            self._untrack_and_close(client)
            return
        server.settimeout(None)
        if not self._track(server) or not self._is_tracked(client):
            self._untrack_and_close(client, server)
            return
        self._spawn(self._pump, client, server)
        self._spawn(self._pump, server, client)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                # Stalled: hold the bytes until restored (or the connection is dropped).
                if not self._wait_forwarding(source):
                    return
                target.sendall(data)
        except OSError:
            pass
        self._untrack_and_close(source, target)

    def _wait_forwarding(self, sock: socket.socket) -> bool:
        while not self._forwarding.wait(_POLL_SECONDS):
            if self._closed.is_set() or not self._is_tracked(sock):
                return False
        return not self._closed.is_set() and self._is_tracked(sock)

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed.is_set():
                _hard_close(sock)
                return False
            self._sockets.add(sock)
            return True

    def _is_tracked(self, sock: socket.socket) -> bool:
        with self._lock:
            return sock in self._sockets

    def _untrack_and_close(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
        for sock in sockets:
            _hard_close(sock)


def _hard_close(sock: socket.socket) -> None:
    # shutdown() wakes up a thread blocked in recv() on this socket; close() alone may not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
