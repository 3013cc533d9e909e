"""manage.py, run as a real subprocess the way a user runs it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from app.config import ENV_FILE_VARIABLE
from tests.conftest import (
    ADMIN_PG_URL,
    PROJECT_ROOT,
    TEST_SECRET,
    PostgresServer,
)
from tests.processes import (
    STARTUP_LIMIT,
    ManageForks,
    RunningServer,
    copy_project,
    free_port,
    manage_forks,
    running_server,
)
from tests.tcp_proxy import TCPProxy

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out


def manage(
    *args: str, database_url: str, cwd: Path = PROJECT_ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "APP_ENV": "test",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,  # a guard against a hang; a cold start on a loaded 2-core machine is slow
        check=False,
    )


def forked(forks: ManageForks, *args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    """`manage(...)` for a sequence of commands, forked (tests/processes.py ManageForks): the
    tests below that run `manage` itself keep the cold start covered."""
    env = {**os.environ, "DATABASE_URL": database_url, "JWT_SECRET_KEY": TEST_SECRET}
    return forks.run(*args, env={**env, "APP_ENV": "test"})


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"


def tables(sqlite_url: str) -> set[str]:
    path = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def columns(sqlite_url: str, table: str) -> set[str]:
    path = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_upgrade_downgrade_and_superuser_on_sqlite(sqlite_url: str, forks: ManageForks) -> None:
    def manage(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
        return forked(forks, *args, database_url=database_url)

    assert manage("upgrade", database_url=sqlite_url).returncode == 0
    assert "users" in tables(sqlite_url)

    created = manage("create-superuser", "Boss@Example.com", database_url=sqlite_url)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created superuser boss@example.com")
    promoted = manage("create-superuser", "boss@example.com", database_url=sqlite_url)
    assert promoted.stdout.startswith("promoted superuser boss@example.com")

    path = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT email, is_superuser FROM users").fetchall()
    assert rows == [("boss@example.com", 1)]

    assert manage("downgrade", "-1", database_url=sqlite_url).returncode == 0
    assert "audit_events" not in tables(sqlite_url)  # the last revision reverted
    assert manage("downgrade", "0002", database_url=sqlite_url).returncode == 0
    assert "security_stamp" not in columns(sqlite_url, "users")  # 0003 reverted
    assert manage("downgrade", "base", database_url=sqlite_url).returncode == 0
    assert "users" not in tables(sqlite_url)
    assert manage("upgrade", database_url=sqlite_url).returncode == 0
    assert "users" in tables(sqlite_url)
    assert "security_stamp" in columns(sqlite_url, "users")
    assert "audit_events" in tables(sqlite_url)


def test_the_cli_takes_any_spelling_of_a_domain(sqlite_url: str, forks: ManageForks) -> None:
    """One canonical email (the domain in IDNA ASCII), from the CLI as from the API."""
    assert forked(forks, "upgrade", database_url=sqlite_url).returncode == 0
    created = forked(forks, "create-superuser", "Boss@АРРӀЕ.com", database_url=sqlite_url)
    assert created.stdout.startswith("created superuser boss@xn--80ak6aa92e.com"), created.stderr
    again = forked(forks, "create-superuser", "boss@XN--80AK6AA92E.com", database_url=sqlite_url)
    assert again.stdout.startswith("promoted superuser boss@xn--80ak6aa92e.com"), again.stderr
    revoked = forked(forks, "revoke-tokens", "boss@аррӏе.com", database_url=sqlite_url)
    assert revoked.stdout.startswith("revoked every API token of boss@xn--80ak6aa92e.com")
    path = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT email FROM users").fetchall() == [("boss@xn--80ak6aa92e.com",)]


def test_create_superuser_promotes_existing_user(sqlite_url: str, forks: ManageForks) -> None:
    assert forked(forks, "upgrade", database_url=sqlite_url).returncode == 0
    path = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO users (email, is_active, is_superuser, security_stamp, created_at, "
            "updated_at) VALUES ('plain@example.com', 0, 0, 's', '2026-01-01', '2026-01-01')"
        )
    result = forked(forks, "create-superuser", "PLAIN@example.com", database_url=sqlite_url)
    assert result.returncode == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT is_superuser, is_active FROM users").fetchall() == [(1, 1)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create-superuser", "not-an-email"), "error: invalid email 'not-an-email'"),
        (("upgrade", "nope"), "error: Can't locate revision identified by 'nope'"),
        (("create-superuser", "a@example.com"), "error: the users table does not exist"),
    ],
)
def test_expected_failures_are_one_line(
    sqlite_url: str, forks: ManageForks, args: tuple[str, ...], message: str
) -> None:
    result = forked(forks, *args, database_url=sqlite_url)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_line() -> None:
    result = manage("upgrade", database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert (
        "error: cannot use the database at postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"
        in (result.stderr)
    )
    assert "Traceback" not in result.stderr


def test_production_without_secret_refuses_to_run(sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "run", "--no-reload"],
        cwd=PROJECT_ROOT,
        env={**env, "APP_ENV": "production", "DATABASE_URL": sqlite_url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "JWT_SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_initdb_creates_missing_postgres_database(
    postgres_server: PostgresServer, forks: ManageForks
) -> None:
    name = f"megapolis_initdb_{os.getpid()}_{int(time.time())}"
    url = postgres_server.url_for(name)
    try:
        first = forked(forks, "initdb", database_url=url)
        assert first.returncode == 0, first.stderr
        assert f"created database {name}" in first.stdout
        second = forked(forks, "initdb", database_url=url)
        assert second.returncode == 0 and "created database" not in second.stdout
        with psycopg.connect(ADMIN_PG_URL.rsplit("/", 1)[0] + f"/{name}") as conn:
            head = ScriptDirectory.from_config(
                Config(str(PROJECT_ROOT / "alembic.ini"))
            ).get_current_head()
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)
    finally:
        postgres_server.drop_database(name)


def test_migrate_autogenerates_a_revision(tmp_path: Path, sqlite_url: str) -> None:
    """In a copy of the project: a new model → `migrate -m` writes a revision that creates it."""
    project = copy_project(tmp_path / "project")
    (project / "app" / "models" / "note.py").write_text(
        "from sqlalchemy.orm import Mapped, mapped_column\n"
        "from app.db.base import Base\n\n"
        "class Note(Base):\n"
        "    __tablename__ = 'notes'\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
        "    body: Mapped[str]\n"
    )
    with (project / "app" / "models" / "__init__.py").open("a") as init:
        init.write("from app.models.note import Note  # noqa: E402,F401\n")

    assert manage("upgrade", database_url=sqlite_url, cwd=project).returncode == 0
    result = manage("migrate", "-m", "add notes", database_url=sqlite_url, cwd=project)
    assert result.returncode == 0, result.stderr
    revisions = list((project / "alembic" / "versions").glob("*add_notes.py"))
    assert len(revisions) == 1
    # Formatted by the post-write hook (ruff): alembic itself writes 'notes'.
    assert "create_table" in revisions[0].read_text() and '"notes"' in revisions[0].read_text()
    assert manage("upgrade", database_url=sqlite_url, cwd=project).returncode == 0
    assert {"users", "notes"} <= tables(sqlite_url)


def test_migrate_on_a_database_behind_the_latest_revision(tmp_path: Path) -> None:
    """Autogenerate needs the database at head: any database is refused in one line saying
    what to run; the embedded development database is upgraded first instead."""
    project = copy_project(tmp_path / "project")
    behind = f"sqlite+aiosqlite:///{tmp_path / 'behind.db'}"
    assert manage("upgrade", "0002", database_url=behind).returncode == 0
    refused = manage("migrate", "-m", "too early", database_url=behind, cwd=project)
    assert refused.returncode == 1
    # After Alembic's own INFO lines (alembic.ini's logging), one line, and no traceback.
    assert refused.stderr.splitlines()[-1] == (
        "error: the database is not at the latest migration; "
        "run: poetry run python manage.py upgrade (then migrate again)"
    )
    assert "Traceback" not in refused.stderr
    assert not list((project / "alembic" / "versions").glob("*too_early*"))

    fresh = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    result = manage(
        "migrate", "-m", "first", database_url=fresh, cwd=project, APP_ENV="development"
    )
    assert result.returncode == 0, result.stderr
    assert "upgrading the development database to the latest migration first" in result.stdout
    assert "security_stamp" in columns(fresh, "users")  # at head (0003)
    assert len(list((project / "alembic" / "versions").glob("*_first.py"))) == 1


@pytest.fixture
def served(sqlite_url: str) -> Iterator[RunningServer]:
    assert manage("upgrade", database_url=sqlite_url).returncode == 0
    with running_server(sqlite_url, kind=RunningServer) as server:
        yield server


def test_run_serves_and_stops_cleanly_on_sigterm(served: RunningServer) -> None:
    base = served.base_url
    assert httpx.get(f"{base}/").json() == {"message": "Hello, world!"}
    assert httpx.get(f"{base}/readyz").status_code == 200
    response = httpx.get(f"{base}/api/v1/users/me", headers={"X-Request-ID": "cli-run-1"})
    assert response.status_code == 401
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=20) == 0
    deadline = time.monotonic() + 5  # the output reader drains what is left
    while "rid=cli-run-1" not in served.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "GET /api/v1/users/me 401" in served.text() and "rid=cli-run-1" in served.text()


def test_dev_token_script_signs_a_token_for_an_existing_user(sqlite_url: str) -> None:
    assert manage("upgrade", database_url=sqlite_url).returncode == 0
    assert manage("create-superuser", "dev@example.com", database_url=sqlite_url).returncode == 0
    env = {**os.environ, "DATABASE_URL": sqlite_url, "JWT_SECRET_KEY": TEST_SECRET}
    script = [sys.executable, "scripts/dev_token.py"]

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*script, *args],
            cwd=PROJECT_ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    made = run("dev@example.com", APP_ENV="development")
    assert made.returncode == 0, made.stderr
    claims = jwt.decode(made.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    path = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        user_id, stamp = conn.execute("SELECT id, security_stamp FROM users").fetchone()
    assert (claims["sub"], claims["email"], claims["stamp"]) == (
        str(user_id),
        "dev@example.com",
        stamp,
    )

    unknown = run("nobody@example.com", APP_ENV="development")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: no user with email 'nobody@example.com'"
    refused = run("dev@example.com", APP_ENV="production")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "not in production" in refused.stderr
    # Production without a key (the settings themselves refuse to load): the same one line.
    keyless = run("dev@example.com", APP_ENV="production", JWT_SECRET_KEY="")
    assert keyless.returncode == 1 and keyless.stdout == ""
    assert keyless.stderr.splitlines() == [
        "error: not in production: tokens come from the Supabase exchange"
    ]


def test_dev_token_script_has_real_arguments() -> None:
    """`--help` is help, not an email; a missing or extra argument is a usage error."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "scripts/dev_token.py", *args],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: scripts/dev_token.py [-h] EMAIL")
    assert "no user" not in helped.stdout + helped.stderr
    for wrong in ((), ("a@example.com", "b@example.com")):
        misused = run(*wrong)
        assert misused.returncode == 2 and "usage: scripts/dev_token.py" in misused.stderr


# --- database problems: one line, what to set, exit 1 (both drivers, every command) ----------

DATABASE_COMMANDS = {
    "upgrade": ("upgrade",),
    "downgrade": ("downgrade", "-1"),
    "migrate": ("migrate", "-m", "nothing"),
    "initdb": ("initdb",),
    "create-superuser": ("create-superuser", "boss@example.com"),
    "revoke-tokens": ("revoke-tokens", "boss@example.com"),
    "run": ("run", "--no-reload", "--port", "1"),
}
MISSING_DATABASE = "megapolis_missing_db"
UNKNOWN_ROLE = "megapolis_nobody"


def database_problems(driver: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Case → (DATABASE_URL, what stderr must say)."""
    base = PostgresServer(ADMIN_PG_URL).url_for("postgres", driver)
    server = base.split("@", 1)[1].rsplit("/", 1)[0]
    return {
        "missing database": (
            base.rsplit("/", 1)[0] + f"/{MISSING_DATABASE}",
            (f'database "{MISSING_DATABASE}" does not exist', "manage.py initdb"),
        ),
        "unknown role": (
            f"postgresql+{driver}://{UNKNOWN_ROLE}@{server}/postgres",
            (f'role "{UNKNOWN_ROLE}" does not exist', "fix the user name in DATABASE_URL"),
        ),
        "unreachable": (
            f"postgresql+{driver}://postgres@127.0.0.1:1/postgres",
            ("connection refused", "start PostgreSQL, or fix the host and port in DATABASE_URL"),
        ),
    }


CONFIGURATION_PROBLEMS = {
    "unparsable URL": ("foo", ("DATABASE_URL is not a database URL; set it like",)),
    "unsupported database": ("mysql://u:p@db/app", ("DATABASE_URL is a mysql URL",)),
    "unsupported driver": (
        "postgresql+psycopg2://u:p@db/app",
        ("asks for the driver 'psycopg2'", "set postgresql://… (asyncpg)"),
    ),
}


def one_line_failures(
    cases: dict[str, tuple[str, tuple[str, ...]]],
    project: Path,
    skip: set[tuple[str, str]],
    scratch: Path,
) -> list[str]:
    """Every command with every case (forked from one process that imported manage.py: about
    40 runs, each a cold start otherwise); what went wrong, if anything."""
    runs = [
        (command, case, url, expected)
        for case, (url, expected) in cases.items()
        for command in DATABASE_COMMANDS
        if (command, case) not in skip
    ]
    problems = []
    with manage_forks(project, scratch) as forks:
        for command, case, url, expected in runs:
            env = {**os.environ, "DATABASE_URL": url, "JWT_SECRET_KEY": TEST_SECRET}
            result = forks.run(*DATABASE_COMMANDS[command], env={**env, "APP_ENV": "test"})
            lines = result.stderr.splitlines()
            if (
                result.returncode != 1
                or len(lines) != 1
                or not lines[0].startswith("error: ")
                or not all(text in lines[0] for text in expected)
                or ":p@" in result.stderr
            ):
                problems.append(
                    f"{command} / {case}: exit {result.returncode}, stderr:\n{result.stderr}"
                )
    return problems


@pytest.fixture(scope="module")
def cli_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project: `migrate` must never write a revision into the real tree."""
    return copy_project(tmp_path_factory.mktemp("cli") / "project")


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_database_problems_are_one_line_with_either_driver(
    postgres_server: PostgresServer, cli_project: Path, driver: str, tmp_path: Path
) -> None:
    """Before: with asyncpg, a missing database or unknown role was a 402-line traceback.
    initdb creates a missing database, and `run` waits for an unreachable one (tested below)."""
    skip = {("initdb", "missing database"), ("run", "unreachable")}
    assert one_line_failures(database_problems(driver), cli_project, skip, tmp_path) == []


def test_configuration_problems_are_one_line(cli_project: Path, tmp_path: Path) -> None:
    """Before: `DATABASE_URL=foo` was a 238-line traceback, `mysql://…` 181 lines."""
    assert one_line_failures(CONFIGURATION_PROBLEMS, cli_project, set(), tmp_path) == []


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_run_waits_for_a_database_that_is_not_up_yet(
    postgres_server: PostgresServer, driver: str
) -> None:
    """An unreachable database is not a reason to exit (Compose and Kubernetes start the API and
    its database together): the server starts, says why /readyz answers 503, and is ready as
    soon as the database answers. Its shutdown log says nothing false about the pool."""
    name = postgres_server.create_database("megapolis_late")
    port = free_port()
    upstream = int(str(psycopg.conninfo.conninfo_to_dict(ADMIN_PG_URL).get("port", 5432)))
    url = postgres_server.url_for(name, driver).replace(f":{upstream}/", f":{port}/")
    try:
        with running_server(url, kind=RunningServer) as server:
            not_ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
            assert not_ready.status_code == 503
            with TCPProxy(upstream_port=upstream, port=port):
                deadline = time.monotonic() + 30
                while httpx.get(f"{server.base_url}/readyz", timeout=10).status_code != 200:
                    assert time.monotonic() < deadline, server.text()
                    time.sleep(0.2)
                server.process.send_signal(signal.SIGTERM)
                assert server.process.wait(timeout=30) == 0
        output = server.text()
        assert "is not available yet (nothing accepts connections" in output, output
        assert "serving anyway, /readyz answers 503 until it is" in output
        assert (
            "Database unavailable: nothing accepts connections at that host and port "
            "(connection refused); start PostgreSQL, or fix the host and port" in output
        )
        assert "Overflow" not in output and "Pool disposed" not in output, output
    finally:
        postgres_server.drop_database(name)


def test_make_run_serves_while_the_database_is_down(postgres_server: PostgresServer) -> None:
    """`make run`'s upgrade step does not stop the start when the database is only not there yet
    (before: `make run` exited with the upgrade's error); /readyz answers 503 meanwhile. A
    database that can never work still stops it."""
    port = free_port()
    down = postgres_server.url_for("megapolis_absent").rsplit(":", 1)[0] + f":{free_port()}/x"
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": down, "APP_ENV": "development"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = RunningServer(process, port)
    try:
        deadline = time.monotonic() + STARTUP_LIMIT
        while not server.ready():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "make run did not serve"
            time.sleep(0.2)
        assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 503
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate(timeout=30)[0]
    assert "not upgraded: run `manage.py upgrade` once it is" in output, output
    # A missing database is lasting: the upgrade step fails as before, whatever the flag says.
    missing = postgres_server.url_for("megapolis_absent")
    refused = manage("upgrade", "--skip-if-unavailable", database_url=missing)
    assert refused.returncode == 1 and "does not exist" in refused.stderr, refused.stderr


def test_project_files_are_found_from_any_directory(tmp_path: Path) -> None:
    """`python /path/to/manage.py` run elsewhere: the project's .env and a relative SQLite path
    resolve against the project, never the working directory."""
    project = copy_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("DATABASE_URL=sqlite+aiosqlite:///./wrong.db\n")
    # The suite reads no .env (tests/hermetic.py); this test reads the copy's.
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", ENV_FILE_VARIABLE}
    } | {
        "JWT_SECRET_KEY": TEST_SECRET,
        "APP_ENV": "test",
    }

    def upgrade() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(project / "manage.py"), "upgrade"],
            cwd=elsewhere,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    default = upgrade()
    assert default.returncode == 0, default.stderr
    assert "users" in tables(f"sqlite+aiosqlite:///{project / 'megapolis.db'}")

    (project / ".env").write_text("DATABASE_URL=sqlite+aiosqlite:///./from-env.db\n")
    configured = upgrade()
    assert configured.returncode == 0, configured.stderr
    assert "users" in tables(f"sqlite+aiosqlite:///{project / 'from-env.db'}")
    assert sorted(path.name for path in elsewhere.iterdir()) == [".env"]
