"""Helpers for tests that run the project as real processes: a copy of the project to change,
and `python manage.py run` on a free port."""

from __future__ import annotations

import json
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
COMMAND_LIMIT = 120  # a guard against a hanging manage.py command run by ManageForks


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


# `python manage.py …` without a cold start per run (see ManageForks).
_FORK_SERVER = r"""
import json, os, signal, sys, traceback
sys.path.insert(0, os.getcwd())
import manage  # the slow part, once
from app.config import get_settings

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ.clear()
            os.environ.update(request["env"])
            get_settings.cache_clear()
            signal.alarm(request["timeout"])  # a hanging command is killed (SIGALRM), not waited on
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["manage.py", *request["args"]]
            try:
                manage.cli()
                code = 0
            except SystemExit as exc:  # as the interpreter turns it into an exit status
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()  # what an uncaught exception prints, exit status 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class ManageForks:
    """Runs `python manage.py ARGS` in `project` as a new process each time, without paying
    Python's start and manage.py's imports each time (about 1 s of CPU, several seconds of wall
    time on a loaded 2-core machine): one process imports manage.py once, then forks a child per
    command, which runs the CLI as `python manage.py` would from there on — its own environment,
    exit status, stdout and stderr. For tests that run many short commands; what happens before
    the CLI runs (the interpreter's start, the imports) is tested by the plain subprocess tests."""

    def __init__(self, project: Path, scratch: Path) -> None:
        self.scratch = scratch
        self.runs = 0
        self.server = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER],
            cwd=project,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        assert self.server.stdin is not None and self.server.stdout is not None
        self.runs += 1
        stdout, stderr = self.scratch / f"{self.runs}.out", self.scratch / f"{self.runs}.err"
        request = {
            "args": args,
            "env": dict(env),
            "stdout": str(stdout),
            "stderr": str(stderr),
            "timeout": COMMAND_LIMIT,
        }
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        status = self.server.stdout.readline()
        assert status, "the fork server died"
        return subprocess.CompletedProcess(
            ["manage.py", *args], int(status), stdout.read_text(), stderr.read_text()
        )

    def manage(
        self, *args: str, database_url: str, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        """`run` with the environment `launch_server` gives: the test settings, `settings` on
        top."""
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": TEST_SECRET,
            "APP_ENV": "test",
            **settings,
        }
        return self.run(*args, env=env)

    def close(self) -> None:
        assert self.server.stdin is not None
        self.server.stdin.close()
        self.server.wait(timeout=30)


@contextmanager
def manage_forks(project: Path, scratch: Path) -> Iterator[ManageForks]:
    forks = ManageForks(project, scratch)
    try:
        yield forks
    finally:
        try:
            forks.close()
        finally:
            if forks.server.poll() is None:
                forks.server.kill()
                forks.server.wait()
