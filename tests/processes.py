"""Helpers for tests that run the project as real processes: a copy of the project to change,
and `python manage.py run` on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.conftest import PROJECT_ROOT, TEST_SECRET

STARTUP_LIMIT = 60.0  # a cold start on a busy 2-core machine; usually 2-4 s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def copy_project(destination: Path) -> Path:
    """What `manage.py` needs to run (app, migrations, CLI), copied to `destination`, for tests
    that change models or migrations without touching the real tree."""
    destination.mkdir(parents=True)
    for name in ("app", "alembic"):
        shutil.copytree(
            PROJECT_ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("manage.py", "alembic.ini"):
        shutil.copy(PROJECT_ROOT / name, destination / name)
    return destination


def launch_server(
    database_url: str,
    port: int,
    *extra: str,
    env: Mapping[str, str] | None = None,
    project: Path = PROJECT_ROOT,
) -> subprocess.Popen[str]:
    """`python manage.py run --no-reload --port PORT [extra]` in its own process group (so a
    cleanup with `os.killpg` reaches its workers too), output on `stdout`; `env`: more
    environment variables (settings) for the server; `project`: a copy to serve instead."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "run", "--no-reload", "--port", str(port), *extra],
        cwd=project,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": TEST_SECRET,
            "APP_ENV": "test",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        """Everything the server printed so far."""
        return "".join(self.output)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False


ServerT = TypeVar("ServerT", bound=RunningServer)


@contextmanager
def running_server(
    database_url: str,
    *extra: str,
    kind: type[ServerT] = RunningServer,  # type: ignore[assignment]
    env: Mapping[str, str] | None = None,
    project: Path = PROJECT_ROOT,
) -> Iterator[ServerT]:
    """`manage.py run` answering on /healthz; killed (with its workers) at the end whatever
    happens. `kind` may be a subclass of RunningServer with a test's own helpers; `env` and
    `project` as for `launch_server`."""
    port = free_port()
    process = launch_server(database_url, port, *extra, env=env, project=project)
    server = kind(process, port)
    assert process.stdout is not None
    reader = threading.Thread(target=server.output.extend, args=(process.stdout,), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + STARTUP_LIMIT
        while not server.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{server.text()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        reader.join(timeout=5)
