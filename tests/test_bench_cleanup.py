"""An interrupted `make bench` leaves nothing behind: `bench/run.py` started for real with a tiny
configuration, interrupted while wrk is loading its servers (Ctrl-C as a terminal sends it, to
the whole process group, and SIGTERM to the script alone), must stop every server it started and
drop its throwaway database.

Needs wrk (`apt-get install wrk`; `.ci/run` installs it) and PostgreSQL: without them the test
is skipped with the reason, and with CI=true it fails instead.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from typing import IO

import psycopg
import pytest

from tests.conftest import IN_CI, PROJECT_ROOT, PostgresServer

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

STARTUP_LIMIT = 240.0  # seeding, migrating and starting four servers on a busy 2-core machine
CLEANUP_LIMIT = 90.0  # servers stopped (20 s each at most), database dropped


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        reason = "wrk is not installed (Debian/Ubuntu: apt-get install wrk)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires the bench cleanup test")
        pytest.skip(reason)


def read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def database_exists(server: PostgresServer, name: str) -> bool:
    with psycopg.connect(server.admin_url, autocommit=True, connect_timeout=3) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@pytest.mark.parametrize("interruption", ["ctrl-c", "sigterm"])
def test_interrupted_bench_stops_its_servers_and_drops_its_database(
    postgres_server: PostgresServer, interruption: str
) -> None:
    require_wrk()
    process = subprocess.Popen(
        [
            sys.executable,
            "bench/run.py",
            *("--duration", "1", "--warmup", "1", "--rounds", "1"),
            *("--targets", "root", "--metrics", "on", "--quiet-wait", "0"),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "BENCH_POSTGRES_URL": postgres_server.admin_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []
    database = ""
    server_pids: dict[str, int] = {}
    try:
        while True:
            line = lines.get(timeout=STARTUP_LIMIT)
            assert line is not None, "bench/run.py ended before measuring:\n" + "".join(output)
            output.append(line)
            if match := re.match(r"created database (\S+)", line):
                database = match.group(1)
            if match := re.match(r"started (\S+) \(pid (\d+)\)", line):
                server_pids[match.group(1)] = int(match.group(2))
            if line.startswith("measuring"):
                break
        assert database and database_exists(postgres_server, database)
        assert set(server_pids) == {"api", "r1", "r2"}
        assert all(pid_exists(pid) for pid in server_pids.values())

        if interruption == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # the terminal signals the whole job
        else:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=CLEANUP_LIMIT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # What the script left behind, before this test cleans it up.
        left = [name for name, pid in server_pids.items() if pid_exists(pid)]
        database_left = bool(database) and database_exists(postgres_server, database)
        for name in left:
            os.killpg(server_pids[name], signal.SIGKILL)
        if database_left:
            postgres_server.drop_database(database)

    while (line := lines.get(timeout=10)) is not None:
        output.append(line)
    text = "".join(output)
    assert process.returncode != 0, text
    assert "interrupted" in text, text
    assert f"dropped {database}" in text, text
    assert not database_left, f"database {database} left behind\n{text}"
    assert not left, f"servers still running: {left}\n{text}"
