"""`manage.py dev-supabase`, as a newcomer uses it: real processes, on SQLite and PostgreSQL.

Start it, read what it prints, start the API (`manage.py run`) with the two settings it printed,
exchange the token it printed, call `/auth/me`, then run the commands it printed for more
tokens. It never runs with APP_ENV=production and only listens on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest

from app.config import ENV_FILE_VARIABLE
from app.db.database import Database
from app.supabase import dev_server
from tests.conftest import PROJECT_ROOT, delete_all_rows, make_settings
from tests.processes import (
    STARTUP_LIMIT,
    ManageForks,
    RunningServer,
    copy_project,
    free_port,
    running_server,
)

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

EXPORT = re.compile(r"^export (SUPABASE_[A-Z_]+)=(\S+)$", re.M)
EXCHANGE_SNIPPET = re.compile(r"^API_TOKEN=\$\(.*?^curl [^\n]*$", re.M | re.S)
MORE_TOKENS_SNIPPET = re.compile(r"^SUPABASE_TOKEN=\$\(curl.*?\)$", re.M | re.S)
EXPECTED = {"SUPABASE_URL", "SUPABASE_PUBLISHABLE_KEY", "SUPABASE_TOKEN"}


@dataclass
class DevSupabase:
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)

    def exports(self) -> dict[str, str]:
        return dict(EXPORT.findall(self.text()))


def dev_supabase_command(*args: str) -> list[str]:
    return [sys.executable, str(PROJECT_ROOT / "manage.py"), "dev-supabase", *args]


@contextmanager
def dev_supabase(port: int, env: dict[str, str] | None = None) -> Iterator[DevSupabase]:
    process = subprocess.Popen(
        dev_supabase_command("--port", str(port)),
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = DevSupabase(process)
    assert process.stdout is not None
    reader = threading.Thread(target=running.output.extend, args=(process.stdout,), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + STARTUP_LIMIT
        while not (
            EXPECTED <= running.exports().keys() and MORE_TOKENS_SNIPPET.search(running.text())
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dev-supabase did not start:\n{running.text()}")
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        reader.join(timeout=5)


async def delete_rows(database_url: str) -> None:
    database = Database(make_settings(database_url))
    try:
        await delete_all_rows(database)
    finally:
        await database.dispose()


def run_snippet(snippet: str, env: dict[str, str], then: str) -> str:
    """Run what dev-supabase printed, as a newcomer pastes it into bash; `then` prints a result."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{snippet}\n{then}"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_a_newcomer_signs_in_with_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dev_supabase(free_port()) as fake:
        exports = fake.exports()
        assert exports["SUPABASE_URL"].startswith("http://127.0.0.1:")
        # The API as `make run` starts it, with the two settings it printed (and no others).
        monkeypatch.setenv("SUPABASE_URL", exports["SUPABASE_URL"])
        monkeypatch.setenv("SUPABASE_PUBLISHABLE_KEY", exports["SUPABASE_PUBLISHABLE_KEY"])
        for name in ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET", "SUPABASE_VERIFY_MODE"):
            monkeypatch.delenv(name, raising=False)
        try:
            with running_server(database_url, kind=RunningServer) as api:
                supabase_token = {"Authorization": f"Bearer {exports['SUPABASE_TOKEN']}"}
                exchanged = httpx.get(
                    f"{api.base_url}/auth/verify_supabase_token", headers=supabase_token
                )
                assert exchanged.status_code == 200, exchanged.text
                me = httpx.get(
                    f"{api.base_url}/auth/me",
                    headers={"Authorization": f"Bearer {exchanged.json()['token']}"},
                )
                assert me.json() == {"user": exchanged.json()["user"]}
                assert me.json()["user"]["email"] == dev_server.DEFAULT_EMAIL

                if shutil.which("curl"):  # the printed commands, as printed (curl, python3)
                    text = fake.text().replace(dev_server.API_URL, api.base_url)
                    exchange = EXCHANGE_SNIPPET.search(text)
                    more = MORE_TOKENS_SNIPPET.search(text)
                    assert exchange is not None and more is not None, text
                    printed = run_snippet(exchange[0], exports, then="")
                    assert printed == me.text
                    again = run_snippet(
                        more[0] + "\n" + exchange[0], exports, then='echo; echo "$SUPABASE_TOKEN"'
                    )
                    new_token = again.splitlines()[-1]
                    assert new_token != exports["SUPABASE_TOKEN"]
                    assert again.splitlines()[0] == me.text  # same user, a new Supabase session
        finally:
            await delete_rows(database_url)

        # Ctrl-C (or SIGTERM) stops it cleanly.
        fake.process.send_signal(signal.SIGINT)
        assert fake.process.wait(timeout=STARTUP_LIMIT) == 0
        time.sleep(0.2)
        assert "dev-supabase stopped" in fake.text()


def refused(
    forks: ManageForks, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return forks.run("dev-supabase", *args, env={**os.environ, **env})


@pytest.mark.parametrize("app_env", ["Production", "staging"])
def test_it_refuses_to_run_outside_development(app_env: str, forks: ManageForks) -> None:
    port = free_port()
    result = refused(forks, {"APP_ENV": app_env}, "--port", str(port))
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "development only" in line and f"APP_ENV={app_env.lower()}" in line
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_it_reads_app_env_from_dot_env_too(tmp_path: Path) -> None:
    """Production set only in the project's `.env` (whatever else is missing there) is refused the
    same way. The `.env` is read from the project, not the current directory, so this runs a copy
    of the project that has one, from another directory."""
    project = copy_project(tmp_path / "project")
    (project / ".env").write_text("APP_ENV=production\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The suite reads no .env (tests/hermetic.py); this test reads the copy's.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"APP_ENV", ENV_FILE_VARIABLE}
    }
    result = subprocess.run(
        [sys.executable, str(project / "manage.py"), "dev-supabase", "--port", str(free_port())],
        cwd=elsewhere,
        env={**env, "JWT_SECRET_KEY": ""},
        capture_output=True,
        text=True,
        timeout=STARTUP_LIMIT,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "APP_ENV=production" in result.stderr


def test_a_taken_port_is_one_line(forks: ManageForks) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = refused(forks, {}, "--port", str(port))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert f"127.0.0.1:{port}" in line and "--port" in line


def test_it_listens_on_loopback_only() -> None:
    printed: list[str] = []
    stop = threading.Event()
    port = free_port()
    server = threading.Thread(
        target=dev_server.serve, kwargs={"port": port, "echo": printed.append, "stop": stop}
    )
    server.start()
    try:
        deadline = time.monotonic() + 10
        while not printed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"http://127.0.0.1:{port}" in printed[0]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        # Bound to 127.0.0.1 itself, not to every interface: another address of this host
        # (127.0.0.2 is one on Linux) is refused.
        with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=2):
            pass
    finally:
        stop.set()
        server.join(timeout=10)
    assert printed[-1] == "dev-supabase stopped"


def test_the_same_email_keeps_its_supabase_id_across_restarts() -> None:
    """So a restarted dev-supabase does not meet 409 "linked to another Supabase user"."""
    ids = []
    for _ in range(2):
        printed: list[str] = []
        stop = threading.Event()
        thread = threading.Thread(
            target=dev_server.serve,
            kwargs={"port": free_port(), "echo": printed.append, "stop": stop},
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not printed and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=10)
        token = dict(EXPORT.findall(printed[0]))["SUPABASE_TOKEN"]
        ids.append(jwt.decode(token, options={"verify_signature": False})["sub"])
    assert ids[0] == ids[1]
