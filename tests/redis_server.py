"""A real `redis-server` for tests: on a free loopback port, nothing written to disk, stopped at
the end whatever happens.

    with started_redis_server() as redis:   # or the `redis_server` fixture of a test module
        settings = make_settings(url, REDIS_URL=redis.url)
        redis.stop()    # Redis gone mid-run
        redis.start()   # back, empty, on the same port
        redis.stall()   # Redis hangs (SIGSTOP): connections open, nothing answers, until resume()

`redis-server` not installed: skipped with the reason, except with CI=true, where that is a
failure (`.ci/run` installs it, as it does PgBouncer; tests/conftest.py treats PostgreSQL the same
way).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.conftest import IN_CI
from tests.processes import free_port

START_LIMIT = 10.0  # seconds for redis-server to answer PING; usually a few milliseconds
INSTALL_HINT = "Debian/Ubuntu: apt-get install redis-server"


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_redis_server() -> str:
    """The binary; else skip the test with the reason (fail it with CI=true)."""
    binary = find_redis_server()
    if binary is None:
        reason = f"redis-server is not installed ({INSTALL_HINT})"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires the Redis rate-limit tests")
        pytest.skip(reason)
    return binary


class RedisServer:
    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain (synchronous) client for the test's own checks; close it after use."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start on `self.port` (the same one after a stop), with no persistence."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + START_LIMIT
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self._stop_and_read()
                pytest.fail(f"redis-server did not start on port {self.port}:\n{output}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGKILL: gone at once, as in a crash); its data is lost."""
        self._stop_and_read()

    def stall(self) -> None:
        """Make Redis hang: the kernel still accepts connections, but nothing is answered
        until `resume()`. (SIGSTOP rather than CLIENT PAUSE: on Redis 7.0 CLIENT UNPAUSE waits
        out the pause itself, so a test could not end the stall when it is done.)"""
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGCONT)

    def keys(self, pattern: str = "*") -> list[str]:
        with self.client() as client:
            return sorted(key.decode() for key in client.keys(pattern))

    def _answers(self) -> bool:
        try:
            with redis.Redis(
                host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5
            ) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def _stop_and_read(self) -> str:
        process, self.process = self.process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=10)
        return output or ""


@contextmanager
def started_redis_server() -> Iterator[RedisServer]:
    """A running `redis-server`, stopped at the end; skips (fails in CI) when not installed."""
    binary = require_redis_server()
    directory = Path(tempfile.mkdtemp(prefix="megapolis-redis-"))
    server = RedisServer(binary, directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
