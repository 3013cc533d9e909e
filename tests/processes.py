"""Helpers for tests that run the API as a real process (`python manage.py run`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.conftest import PROJECT_ROOT, TEST_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def launch_server(database_url: str, port: int, *extra: str) -> subprocess.Popen[str]:
    """`python manage.py run --no-reload --port PORT [extra]` in its own process group (so a
    cleanup with `os.killpg` reaches its workers too), output on `stdout`."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "run", "--no-reload", "--port", str(port), *extra],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": TEST_SECRET,
            "APP_ENV": "test",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
