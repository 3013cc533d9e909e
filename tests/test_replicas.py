"""Several replicas at once: nothing that must be shared lives only in one process's memory.

- `manage.py upgrade` started by four replicas at the same instant applies each revision once
  (the PostgreSQL advisory lock in alembic/env.py), and every replica exits 0;
- a token issued by one app instance is honoured by another, and what one instance changes
  (a user deactivated) the other sees at once;
- the development JWT secret file, created by several processes at the same instant, holds one
  key that all of them read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import psycopg
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.config import Settings, development_secret
from app.db.database import open_session
from app.main import create_app
from app.models.user import User
from app.security import issue_token
from manage import alembic_config
from tests.conftest import TEST_SECRET, PostgresServer, make_settings, migrate
from tests.processes import copy_project

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

REPLICAS = 4
PROCESS_LIMIT = 60.0

# Makes the processes of a test start their real work at the same instant: each says it is
# ready, then waits for the test to say go (a file appearing in the barrier directory). Called
# in alembic/env.py once connected, just before the migration's transaction: the imports and the
# connection, which take each process a different time on a loaded machine, are behind them.
BARRIER = """
import os as _os, pathlib as _pathlib, time as _time


def _replica_barrier() -> None:
    barrier = _os.environ.get("REPLICA_BARRIER")
    if barrier:
        (_pathlib.Path(barrier) / f"ready-{_os.getpid()}").touch()
        while not (_pathlib.Path(barrier) / "go").exists():
            _time.sleep(0.005)
"""
BARRIER_CALL = "    configure(connection)\n    _replica_barrier()\n"


def start_together(
    commands: list[list[str]], barrier: Path, cwd: Path, env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """Start every command, wait until all stand at the barrier, release them, collect them."""
    barrier.mkdir()
    processes = [
        subprocess.Popen(
            command,
            cwd=cwd,
            env={**env, "REPLICA_BARRIER": str(barrier)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    try:
        deadline = time.monotonic() + PROCESS_LIMIT
        while len(list(barrier.glob("ready-*"))) < len(processes):
            failed = [p for p in processes if p.poll() is not None]
            assert not failed, failed[0].communicate()
            assert time.monotonic() < deadline, "processes never reached the barrier"
            time.sleep(0.01)
        (barrier / "go").touch()
        results = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=PROCESS_LIMIT)
            results.append(
                subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
            )
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


# -- migrations ---------------------------------------------------------------------------------

HEAD = str(
    ScriptDirectory.from_config(alembic_config(make_settings("sqlite://"))).get_current_head()
)

COUNTING_REVISION = '''
"""count the runs of this revision

Revision ID: 9999
Revises: {head}
"""

import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Hold the migration a moment, so the other replicas have to wait for it.
    op.execute(sa.text("SELECT pg_sleep(0.5)"))
    op.execute(sa.text("INSERT INTO migration_runs (backend_pid) VALUES (pg_backend_pid())"))


def downgrade() -> None:
    pass
'''


@pytest.fixture
def counting_project(tmp_path: Path) -> Path:
    """A copy of the project with a barrier in alembic/env.py (before the migration's
    transaction, so before the lock) and a revision 9999, after the last one, that records each
    time it is applied."""
    project = copy_project(tmp_path / "project")
    env_py = project / "alembic" / "env.py"
    source = env_py.read_text()
    head, marker, rest = source.partition("from __future__ import annotations\n")
    assert marker and rest.count("    configure(connection)\n") == 1
    rest = rest.replace("    configure(connection)\n", BARRIER_CALL)
    env_py.write_text(head + marker + BARRIER + rest)
    (project / "alembic" / "versions" / "99990101_9999_count_runs.py").write_text(
        textwrap.dedent(COUNTING_REVISION).replace("{head}", HEAD)
    )
    return project


@pytest.fixture
def fresh_database(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """(asyncpg URL, libpq URL) of a new database holding only the `migration_runs` table."""
    name = postgres_server.create_database("megapolis_replicas")
    try:
        url = postgres_server.url_for(name)
        libpq = make_url(url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute("CREATE TABLE migration_runs (backend_pid integer NOT NULL)")
        yield url, libpq
    finally:
        postgres_server.drop_database(name)


def upgrade_at_once(
    project: Path, url: str, tmp_path: Path, replicas: int = REPLICAS
) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "DATABASE_URL": url, "JWT_SECRET_KEY": TEST_SECRET, "APP_ENV": "test"}
    command = [sys.executable, "manage.py", "upgrade"]
    return start_together([command] * replicas, tmp_path / "barrier", project, env)


def test_replicas_upgrading_at_once_apply_each_revision_once(
    counting_project: Path, fresh_database: tuple[str, str], tmp_path: Path
) -> None:
    url, libpq = fresh_database
    results = upgrade_at_once(counting_project, url, tmp_path)

    assert [r.returncode for r in results] == [0] * REPLICAS, [r.stderr for r in results]
    for result in results:
        assert "Traceback" not in result.stderr and "error" not in result.stderr.lower()
    # Each revision was run by exactly one replica; the others found the database at head.
    applied = [r for r in results if f"Running upgrade {HEAD} -> 9999" in r.stderr]
    assert len(applied) == 1, [r.stderr for r in results]
    assert sum("Running upgrade  -> 0001" in r.stderr for r in results) == 1
    with psycopg.connect(libpq) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]
        assert conn.execute("SELECT count(*) FROM migration_runs").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_without_the_lock_the_same_race_breaks(
    counting_project: Path, fresh_database: tuple[str, str], tmp_path: Path
) -> None:
    """Control: with the advisory lock taken out of the copy, the same start breaks — so the
    test above does exercise a real race."""
    env_py = counting_project / "alembic" / "env.py"
    source = env_py.read_text()
    lock_guard = 'if connection.dialect.name == "postgresql":'
    assert source.count(lock_guard) == 1 and "pg_advisory_xact_lock" in source
    env_py.write_text(source.replace(lock_guard, "if False:"))
    url, libpq = fresh_database
    results = upgrade_at_once(counting_project, url, tmp_path, replicas=2)

    with psycopg.connect(libpq) as conn:
        runs = conn.execute("SELECT count(*) FROM migration_runs").fetchone()
    failures = [r for r in results if r.returncode != 0]
    assert failures or runs != (1,), "two unlocked upgrades at once did not collide"


# -- app instances ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        migrate(make_settings(url))
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database("megapolis_instances")
    try:
        url = server.url_for(name)
        migrate(make_settings(url))
        yield url
    finally:
        server.drop_database(name)


async def running_instance(stack: AsyncExitStack, settings: Settings) -> httpx.AsyncClient:
    app: FastAPI = create_app(settings)
    await stack.enter_async_context(app.router.lifespan_context(app))
    transport = httpx.ASGITransport(app=app)
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, base_url="http://testserver")
    )


@pytest.fixture
async def two_instances(shared_database: str) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    async with AsyncExitStack() as stack:
        # Two settings objects read separately, as two processes would.
        first = await running_instance(stack, make_settings(shared_database))
        second = await running_instance(stack, make_settings(shared_database))
        yield first, second


async def test_tokens_and_changes_are_shared_between_instances(
    shared_database: str, two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    first, second = two_instances
    settings = make_settings(shared_database)
    async with open_session(settings) as session:
        admin = await User.create(session, email="admin@example.com", is_superuser=True)
        await session.commit()
    admin_token = issue_token(settings, admin).token
    admin_headers = {"Authorization": f"Bearer {admin_token}"}

    # A user created through one instance...
    created = await first.post(
        "/api/v1/users/", json={"email": "shared@example.com"}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    # ...is seen by the other, and a token issued by the first works on the second.
    async with open_session(settings) as session:
        shared = await User.get_by_id(session, user_id)
    assert shared is not None
    token = issue_token(settings, shared).token
    headers = {"Authorization": f"Bearer {token}"}
    for instance in (first, second):
        me = await instance.get("/auth/me", headers=headers)
        assert me.status_code == 200 and me.json()["user"]["id"] == user_id

    # Deactivated through the second instance: the first refuses the token on the next request
    # (no per-process cache of users or tokens).
    patched = await second.patch(
        f"/api/v1/users/{user_id}", json={"is_active": False}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    for instance in (first, second):
        assert (await instance.get("/auth/me", headers=headers)).status_code == 401
    # Deleted through the first: gone for the second too.
    assert (
        await first.delete(f"/api/v1/users/{user_id}", headers=admin_headers)
    ).status_code == 204
    assert (await second.get(f"/api/v1/users/{user_id}", headers=admin_headers)).status_code == 404


# -- development secret -------------------------------------------------------------------------


def read_secret_in_forked_processes(secret_file: Path, count: int) -> list[str]:
    """`development_secret(secret_file)` in `count` forked processes released at the same
    instant (all blocked reading one pipe, which the parent then closes). Forked, not spawned:
    no interpreter start and no import stands between the release and the call."""
    go_read, go_write = os.pipe()
    children: list[tuple[int, int]] = []
    try:
        for _ in range(count):
            out_read, out_write = os.pipe()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads around
                pid = os.fork()
            if pid == 0:  # the child: only plain file operations, then _exit
                status = 1
                try:
                    os.close(go_write)
                    os.read(go_read, 1)  # returns b"" when the parent closes its end
                    os.write(out_write, development_secret(secret_file).encode())
                    status = 0
                finally:
                    os._exit(status)
            os.close(out_write)
            children.append((pid, out_read))
    finally:
        os.close(go_write)  # go
        os.close(go_read)
    keys = []
    for pid, out_read in children:
        with os.fdopen(out_read, "rb") as output:
            keys.append(output.read().decode())
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    return keys


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_development_secret_file_is_shared_by_processes_starting_at_once(tmp_path: Path) -> None:
    # The race window is narrow: several rounds, each in a new directory, to have a chance to
    # hit it (a naive read-or-write version fails about one round in five here).
    for round_ in range(8):
        secret_file = tmp_path / str(round_) / ".secrets" / "jwt_secret_key"
        keys = read_secret_in_forked_processes(secret_file, count=8)

        assert len(keys) == 8 and len(set(keys)) == 1, keys
        assert len(keys[0].encode()) >= 32
        assert secret_file.read_text().strip() == keys[0]
        assert secret_file.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in secret_file.parent.iterdir()] == ["jwt_secret_key"]  # no .tmp
