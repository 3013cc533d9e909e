"""The container files, checked without a Docker engine.

Dockerfile and docker-compose.yml are parsed and held to what docs/deployment.md promises; the
entrypoint script runs for real (with `bash`) against a temporary SQLite database; the image's
HEALTHCHECK command runs against a live server.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.script import ScriptDirectory

from app.config import Settings
from manage import alembic_config
from tests.conftest import PROJECT_ROOT, TEST_SECRET, make_settings
from tests.processes import RunningServer, free_port, running_server

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENTRYPOINT = PROJECT_ROOT / "docker" / "entrypoint.sh"
VENV_BIN = Path(sys.executable).parent  # the project's virtualenv, as `/app/.venv/bin` in the image

# --------------------------------------------------------------------------------------------
# Dockerfile


Instruction = tuple[str, str]


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, continuation lines joined, split into build stages
    (each stage starts with its FROM). Global ARGs before the first FROM form stage 0."""
    stages: list[list[Instruction]] = [[]]
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), " ".join(arguments.split())))
    return stages


def arguments(stage: list[Instruction], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def global_arg(name: str) -> str:
    for args in arguments(dockerfile_stages()[0], "ARG"):
        key, _, default = args.partition("=")
        if key == name:
            return default
    raise AssertionError(f"no global ARG {name}")


def healthcheck_command() -> list[str]:
    (healthcheck,) = arguments(dockerfile_stages()[-1], "HEALTHCHECK")
    _, _, exec_form = healthcheck.partition("CMD ")
    command: list[str] = json.loads(exec_form)
    return command


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    stages = dockerfile_stages()
    froms = [arguments(stage, "FROM")[0] for stage in stages[1:]]
    assert len(froms) >= 2, froms
    assert froms[0].lower().endswith("as builder")
    assert global_arg("PYTHON_IMAGE") == "python:3.12-slim"
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    runtime = stages[-1]
    assert "--from=builder /app/.venv /app/.venv" in arguments(runtime, "COPY")


def test_builder_installs_only_locked_main_dependencies_before_the_code() -> None:
    builder = dockerfile_stages()[1]
    copies = [i for i, (kw, _) in enumerate(builder) if kw == "COPY"]
    assert arguments(builder, "COPY") == ["pyproject.toml poetry.lock ./"], "the lock, no code"
    installs = [i for i, (kw, args) in enumerate(builder) if kw == "RUN" and " sync " in args]
    assert len(installs) == 1 and installs[0] > copies[0]
    sync = builder[installs[0]][1]
    assert "--only main" in sync
    run_lines = " ".join(arguments(builder, "RUN"))
    assert '"poetry==${POETRY_VERSION}"' in run_lines
    assert "poetry-plugin-pypi-mirror" in run_lines
    env = " ".join(arguments(builder, "ENV"))
    assert "POETRY_VIRTUALENVS_IN_PROJECT=true" in env  # the venv lands in /app/.venv
    assert "POETRY_PYPI_MIRROR_URL=${PIP_INDEX_URL}" in env
    assert any(a.startswith("PIP_INDEX_URL") for a in arguments(builder, "ARG"))


def test_poetry_versions_match_the_makefile() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    builder = dockerfile_stages()[1]
    for name in ("POETRY_VERSION", "POETRY_MIRROR_PLUGIN_VERSION"):
        wanted = re.search(rf"^{name} \?= (\S+)$", makefile, re.M)
        assert wanted is not None, name
        assert f"{name}={wanted.group(1)}" in arguments(builder, "ARG")


def user_creation() -> str:
    """The runtime stage's RUN that creates the API's user."""
    (run,) = [run for run in arguments(dockerfile_stages()[-1], "RUN") if "useradd" in run]
    return run


def stage_arg(stage: list[Instruction], name: str) -> str:
    for args in arguments(stage, "ARG"):
        key, _, default = args.partition("=")
        if key == name:
            return default
    raise AssertionError(f"no ARG {name} in the stage")


def test_runtime_stage_runs_as_non_root_with_venv_on_path() -> None:
    runtime = dockerfile_stages()[-1]
    users = arguments(runtime, "USER")
    assert users and users[-1] not in ("root", "0"), users
    useradd = re.search(r"useradd (?P<options>.*?) (?P<name>\w+)(?: &&|$)", user_creation())
    assert useradd is not None and useradd["name"] == users[-1]
    assert '--uid "${APP_UID}"' in useradd["options"]
    assert '--gid "${APP_GID}" ' + users[-1] in user_creation()  # the groupadd
    # Without build arguments (`docker build .`): a high id that no host user has.
    assert stage_arg(runtime, "APP_UID") == stage_arg(runtime, "APP_GID") == "10001"
    env = arguments(runtime, "ENV")
    assert "PATH=/app/.venv/bin:$PATH" in env
    assert any("APP_ENV=production" in e for e in env)
    assert arguments(runtime, "EXPOSE") == ["8000"]
    assert arguments(runtime, "ENTRYPOINT") == ['["/app/docker/entrypoint.sh"]']
    assert any("alembic/versions" in run and "chown" in run for run in arguments(runtime, "RUN"))


@pytest.mark.parametrize(
    ("uid", "gid", "refused"),
    [("0", "1000", True), ("1000", "0", True), ("1000", "1000", False), ("501", "20", False)],
)
def test_user_creation_refuses_root_ids(uid: str, gid: str, refused: bool) -> None:
    """The guard that opens the user-creation RUN, run for real with sh (the rest of the RUN,
    groupadd and useradd, would change this machine)."""
    guard = user_creation().partition(" && ")[0]
    assert guard.startswith("if ")
    result = subprocess.run(
        ["sh", "-c", guard],
        env={"PATH": os.environ["PATH"], "APP_UID": uid, "APP_GID": gid},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == (1 if refused else 0)
    assert ("must not be 0" in result.stderr) == refused


def test_runtime_stage_leaves_tmp_writable_for_everyone() -> None:
    assert "chmod 1777 /tmp" in user_creation()


def test_runtime_stage_copies_the_app_and_only_existing_paths() -> None:
    runtime = dockerfile_stages()[-1]
    sources: list[str] = []
    for args in arguments(runtime, "COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        if not args.startswith("--from"):
            sources.extend(parts[:-1])
    for needed in ("app/", "alembic/", "alembic.ini", "manage.py", "docker/entrypoint.sh"):
        assert needed in sources
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), source
        assert not docker_ignored(source.rstrip("/")), f".dockerignore drops {source}"


def test_healthcheck_asks_healthz_with_python() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8000/healthz" in command[2]


# --------------------------------------------------------------------------------------------
# .dockerignore


def docker_ignored(path: str) -> bool:
    """Whether the build context leaves `path` out. Docker's matching, as far as this file needs
    it: a pattern matches from the context root segment by segment (`*` stays within a segment),
    `**/X` matches X at any depth, and a match on a directory excludes what is inside it."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "negations are not modelled here"
    parts = path.split("/")
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
            continue
        segments = pattern.split("/")
        if len(segments) <= len(parts) and all(
            fnmatch.fnmatchcase(part, segment)
            for part, segment in zip(parts, segments, strict=False)
        ):
            return True
    return False


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".tools/poetry/bin/poetry",
        ".secrets/jwt_secret_key",
        ".env",
        "megapolis.db",
        "app/__pycache__/main.cpython-312.pyc",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.10/app",
        "clients/typescript/node_modules/typescript/package.json",
        "e2e/node_modules/.bin/playwright",
    ],
)
def test_dockerignore_leaves_out_local_state(path: str) -> None:
    assert docker_ignored(path)


# --------------------------------------------------------------------------------------------
# docker-compose.yml

VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def interpolate(value: str, environment: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}`."""

    def substitute(match: re.Match[str]) -> str:
        found = environment.get(match["name"], "")
        if found:
            return found
        if match["op"] == ":?":
            raise LookupError(match["arg"])
        return match["arg"] or ""

    return VARIABLE.sub(substitute, value)


def api_environment(environment: dict[str, str]) -> dict[str, str]:
    env = compose()["services"]["api"]["environment"]
    assert isinstance(env, dict), "environment as a mapping"
    return {key: interpolate(str(value), environment) for key, value in env.items()}


def test_db_service_has_a_pg_isready_healthcheck_and_a_named_volume() -> None:
    data = compose()
    db = data["services"]["db"]
    assert re.fullmatch(r"postgres:1[67]-alpine", db["image"])
    assert db["environment"] == {
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "postgres",
        "POSTGRES_DB": "megapolis",
    }
    test = db["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and test[1] == "pg_isready -U postgres -d megapolis"
    volume, _, target = db["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in data["volumes"]


def test_api_waits_for_a_healthy_database_and_publishes_8000() -> None:
    api = compose()["services"]["api"]
    assert api["build"]["context"] == "."
    assert api["ports"] == ["8000:8000"]
    assert api["depends_on"] == {
        "db": {"condition": "service_healthy", "restart": True},
        "redis": {"condition": "service_healthy"},
    }


def test_redis_holds_the_counters_every_api_process_shares() -> None:
    """The API's REDIS_URL defaults to the redis service (.env may point elsewhere); Redis keeps
    nothing on disk, publishes no port, and is built on the API's base image (one image less
    to pull)."""
    redis = compose()["services"]["redis"]
    assert "ports" not in redis
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    url = api_environment({"JWT_SECRET_KEY": TEST_SECRET})["REDIS_URL"]
    assert url == "redis://redis:6379/0"
    assert make_settings("sqlite://", REDIS_URL=url).REDIS_URL == url
    assert (
        api_environment({"JWT_SECRET_KEY": TEST_SECRET, "REDIS_URL": "rediss://x:1/2"})["REDIS_URL"]
        == "rediss://x:1/2"
    )
    dockerfile = (PROJECT_ROOT / redis["build"]["context"] / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    (api_base,) = re.findall(
        r"^ARG PYTHON_IMAGE=(\S+)$", (PROJECT_ROOT / "Dockerfile").read_text(), re.M
    )
    assert base == api_base
    command = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert command is not None
    argv = json.loads(command.group(1))
    assert argv[0] == "redis-server"
    assert argv[argv.index("--save") + 1] == "" and argv[argv.index("--appendonly") + 1] == "no"
    assert re.search(r"^USER redis$", dockerfile, re.M), "not as root"


def test_api_user_ids_come_from_the_environment_and_default_to_1000() -> None:
    args = compose()["services"]["api"]["build"]["args"]
    assert set(args) == {"APP_UID", "APP_GID"}
    assert {k: interpolate(v, {}) for k, v in args.items()} == {
        "APP_UID": "1000",
        "APP_GID": "1000",
    }
    chosen = {"APP_UID": "1001", "APP_GID": "1002"}
    assert {k: interpolate(v, chosen) for k, v in args.items()} == chosen
    runtime = dockerfile_stages()[-1]
    for name in args:
        stage_arg(runtime, name)  # declared where the user is made, or the value is lost


def image_workdir() -> Path:
    (workdir,) = set(arguments(dockerfile_stages()[-1], "WORKDIR"))
    return Path(workdir)


def test_api_mounts_the_checkouts_revisions_where_the_image_reads_them() -> None:
    """A revision written in one api container is seen by every later one (`run --rm`, a
    restart), and lands in the checkout: the bind mount is the directory alembic reads."""
    versions = ScriptDirectory.from_config(alembic_config(make_settings("sqlite://"))).versions
    in_project = Path(versions).relative_to(PROJECT_ROOT)
    assert in_project == Path("alembic/versions")
    assert "alembic/ alembic/" in arguments(dockerfile_stages()[-1], "COPY")
    mounts = [m.split(":") for m in compose()["services"]["api"]["volumes"]]
    (target,) = [t for s, t in mounts if s == f"./{in_project}"]
    assert Path(target) == image_workdir() / in_project
    assert (PROJECT_ROOT / in_project).is_dir()


def test_api_gets_a_fresh_tmp() -> None:
    assert compose()["services"]["api"]["tmpfs"] == ["/tmp"]


def test_api_environment_reaches_the_database_service() -> None:
    db = compose()["services"]["db"]["environment"]
    env = api_environment({"JWT_SECRET_KEY": TEST_SECRET})
    settings = make_settings(env["DATABASE_URL"], APP_ENV=env["APP_ENV"])
    url = settings.database_url
    assert (url.get_backend_name(), url.get_driver_name()) == ("postgresql", "asyncpg")
    assert (url.host, url.port) == ("db", 5432)
    assert (url.username, url.password, url.database) == (
        db["POSTGRES_USER"],
        db["POSTGRES_PASSWORD"],
        db["POSTGRES_DB"],
    )


# Settings that other work adds to app/config.py; Compose passes them through already.
PASSED_THROUGH = {
    "JWT_PREVIOUS_SECRET_KEYS",
    "SUPABASE_URL",
    "SUPABASE_PUBLISHABLE_KEY",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_WEBHOOK_SECRET",
    "REDIS_URL",
    "RATE_LIMIT_EXCHANGE",
    "LOG_FORMAT",
    "METRICS_ENABLED",
}
NOT_YET_SETTINGS = {
    "JWT_PREVIOUS_SECRET_KEYS",
    "SUPABASE_PUBLISHABLE_KEY",
    "SUPABASE_WEBHOOK_SECRET",
    "REDIS_URL",
    "RATE_LIMIT_EXCHANGE",
    "LOG_FORMAT",
    "METRICS_ENABLED",
}


def container_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the API builds from exactly this process environment (no `.env`: the
    image has none), empty values included, as the container gets them."""
    for name in list(os.environ):
        if name in Settings.model_fields or name in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_api_environment_makes_valid_production_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = api_environment({"JWT_SECRET_KEY": TEST_SECRET})
    for name in env:
        assert name in Settings.model_fields or name in NOT_YET_SETTINGS | {"WEB_CONCURRENCY"}
    # Unset on the host: passed as empty values, which the app reads as unset (REDIS_URL: the
    # redis service).
    assert PASSED_THROUGH <= env.keys()
    assert all(env[name] == "" for name in PASSED_THROUGH - {"REDIS_URL"})
    settings = container_settings(env, monkeypatch)
    assert settings.APP_ENV.value == "production"
    assert settings.jwt_secret == TEST_SECRET
    assert settings.cors_origins == ["http://localhost:3000"]
    assert not settings.supabase_configured


@pytest.mark.parametrize("name", sorted(PASSED_THROUGH))
def test_api_environment_passes_settings_through(name: str) -> None:
    assert api_environment({"JWT_SECRET_KEY": TEST_SECRET, name: "from-dot-env"})[name] == (
        "from-dot-env"
    )


def test_api_refuses_to_start_without_a_jwt_secret() -> None:
    with pytest.raises(LookupError, match=r"set JWT_SECRET_KEY \(32\+ bytes\) in \.env"):
        api_environment({})


# --------------------------------------------------------------------------------------------
# docker/entrypoint.sh, run for real


def entrypoint_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RUN_MIGRATIONS", "WEB_CONCURRENCY")
    }
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        DATABASE_URL=database_url,
        APP_ENV="production",
        JWT_SECRET_KEY=TEST_SECRET,
        **extra,
    )
    return env


def run_entrypoint(
    *command: str, env: dict[str, str], cwd: Path
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the script from another directory (it must find the project itself); return the
    result and the script's pid, which `exec` hands on to the final command."""
    with subprocess.Popen(
        ["bash", str(ENTRYPOINT), *command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(
        process.args, process.returncode, stdout, stderr
    ), process.pid


def head_revision() -> str:
    head = ScriptDirectory.from_config(
        alembic_config(make_settings("sqlite://"))
    ).get_current_head()
    assert head is not None
    return head


def migrated_revision(db_path: Path) -> str | None:
    with sqlite3.connect(db_path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "users" in names
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


@pytest.mark.processes
def test_entrypoint_migrates_then_execs_the_given_command(tmp_path: Path) -> None:
    db_path = tmp_path / "entry.db"
    result, pid = run_entrypoint(
        "python",
        "-c",
        "import os, sys; print('ran', os.getpid(), sys.argv[1:])",
        "--flag",
        env=entrypoint_env(f"sqlite+aiosqlite:///{db_path}"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert migrated_revision(db_path) == head_revision()
    # Same pid: the shell exec'd the command rather than running it as a child.
    assert result.stdout.strip().splitlines()[-1] == f"ran {pid} ['--flag']"


@pytest.mark.processes
def test_entrypoint_serves_by_default(tmp_path: Path) -> None:
    """Without a command it execs `python manage.py run ...`; a `python` shim earlier on PATH
    records that call (and lets the migration through to the real interpreter)."""
    record = tmp_path / "served"
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    shim = shim_dir / "python"
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "manage.py run" ]; then\n'
        f'    {{ echo "$$"; echo "$PWD"; printf \'%s\\n\' "$@"; }} > \'{record}\'\n'
        "    exit 0\n"
        "fi\n"
        f'exec "{VENV_BIN / "python"}" "$@"\n'
    )
    shim.chmod(0o755)
    db_path = tmp_path / "served.db"
    env = entrypoint_env(f"sqlite+aiosqlite:///{db_path}", WEB_CONCURRENCY="3")
    env["PATH"] = f"{shim_dir}{os.pathsep}{env['PATH']}"

    result, pid = run_entrypoint(env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert migrated_revision(db_path) == head_revision()
    shim_pid, cwd, *argv = record.read_text().splitlines()
    assert int(shim_pid) == pid
    assert Path(cwd).resolve() == PROJECT_ROOT
    assert argv == [
        "manage.py",
        "run",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--no-reload",
        "--workers",
        "3",
    ]


@pytest.mark.processes
def test_entrypoint_can_skip_migrations(tmp_path: Path) -> None:
    db_path = tmp_path / "skipped.db"
    env = entrypoint_env(f"sqlite+aiosqlite:///{db_path}", RUN_MIGRATIONS="0")
    result, _ = run_entrypoint("python", "-c", "print('ok')", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert not db_path.exists()


@pytest.mark.processes
def test_entrypoint_stops_when_the_migration_fails(tmp_path: Path) -> None:
    unreachable = tmp_path / "missing-dir" / "db.sqlite"
    env = entrypoint_env(f"sqlite+aiosqlite:///{unreachable}")
    result, _ = run_entrypoint("python", "-c", "print('should not run')", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "should not run" not in result.stdout
    assert "cannot use the database" in result.stderr


# --------------------------------------------------------------------------------------------
# The HEALTHCHECK command against a live server


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[int]:
    with running_server(
        f"sqlite+aiosqlite:///{tmp_path / 'live.db'}", kind=RunningServer
    ) as server:
        yield server.port


def run_healthcheck(port: int) -> int:
    command = healthcheck_command()
    script = command[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    assert script != command[2]
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=30, check=False
    )
    return completed.returncode


@pytest.mark.processes
def test_healthcheck_passes_on_a_live_server_and_fails_without_one(live_server: int) -> None:
    assert run_healthcheck(live_server) == 0
    assert run_healthcheck(free_port()) != 0


# --------------------------------------------------------------------------------------------
# docker/compose-check.sh (`make compose-check`), with a stand-in for the shared tool

COMPOSE_CHECK_WRAPPER = PROJECT_ROOT / "docker" / "compose-check.sh"
IS_ROOT = os.geteuid() == 0

# Records what it was given, as compose_check.sh would see it, and fails like a failed check.
FAKE_TOOL = """#!/usr/bin/env bash
{
    echo "target=$1"
    echo "ids=${APP_UID:-}:${APP_GID:-}"
    echo "versions=$(stat -c '%u:%g' "$1/alembic/versions")"
    echo "revision=$(ls "$1/alembic/versions")"
} > "$RECORD"
echo "compose: 0 passed, 1 failed"
exit 1
"""


def checkout(root: Path) -> Path:
    """A minimal project: the wrapper and one revision, in `root/work/project`."""
    project = root / "work" / "project"
    (project / "docker").mkdir(parents=True)
    shutil.copy(COMPOSE_CHECK_WRAPPER, project / "docker" / "compose-check.sh")
    (project / "alembic" / "versions").mkdir(parents=True)
    (project / "alembic" / "versions" / "0001_first.py").write_text("# a revision\n")
    return project


def install_tool(root: Path) -> Path:
    tool = root / "shared" / "tools" / "compose-check" / "compose_check.sh"
    tool.parent.mkdir(parents=True)
    tool.write_text(FAKE_TOOL)
    return tool


def engine_answers(root: Path) -> str:
    """A `docker` whose `info` succeeds, first on PATH: an engine answers, whatever this
    machine has."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "docker").chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def run_wrapper(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("APP_UID", "APP_GID", "COMPOSE_CHECK")}
    return subprocess.run(
        ["bash", str(project / "docker" / "compose-check.sh")],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def recorded(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_compose_check_says_what_is_missing(tmp_path: Path) -> None:
    project = checkout(tmp_path)
    result = run_wrapper(project)
    assert result.returncode == 2
    assert "the compose-check tool is missing" in result.stderr
    assert f"shared/tools/compose-check/compose_check.sh in the folders above {project}" in (
        result.stderr
    )
    assert "COMPOSE_CHECK=/path/to/compose_check.sh" in result.stderr

    result = run_wrapper(project, COMPOSE_CHECK=str(tmp_path / "nowhere.sh"))
    assert result.returncode == 2
    assert f"Looked for {tmp_path / 'nowhere.sh'}." in result.stderr


@pytest.mark.skipif(not IS_ROOT, reason="compose-check runs as root")
def test_compose_check_runs_the_tool_above_the_project_on_it_as_its_owner(
    tmp_path: Path,
) -> None:
    """A checkout that belongs to a user: checked in place, the API built with that user's ids,
    and the tool's verdict is the wrapper's."""
    project = checkout(tmp_path)
    install_tool(tmp_path)
    os.chown(project / "alembic" / "versions", 1234, 1235)
    record = tmp_path / "record"

    result = run_wrapper(project, PATH=engine_answers(tmp_path), RECORD=str(record))

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1] == "compose: 0 passed, 1 failed"
    assert recorded(record) == {
        "target": str(project),
        "ids": "1234:1235",
        "versions": "1234:1235",
        "revision": "0001_first.py",
    }


@pytest.mark.skipif(not IS_ROOT, reason="a root-owned checkout is made by root")
def test_compose_check_hands_a_root_checkouts_revisions_to_the_api_user(tmp_path: Path) -> None:
    """The API never runs as root: a root-owned checkout is checked on a copy whose
    alembic/versions belongs to 1000:1000 (docs/deployment.md's chown), the copy removed
    afterwards."""
    project = checkout(tmp_path)
    tool = install_tool(tmp_path)
    record = tmp_path / "record"

    result = run_wrapper(
        project, PATH=engine_answers(tmp_path), RECORD=str(record), COMPOSE_CHECK=str(tool)
    )

    assert result.returncode == 1, result.stderr
    seen = recorded(record)
    assert seen["target"] != str(project)
    assert not Path(seen["target"]).exists()
    assert seen | {"target": ""} == {
        "target": "",
        "ids": "1000:1000",
        "versions": "1000:1000",
        "revision": "0001_first.py",
    }
    assert (project / "alembic" / "versions").stat().st_uid == 0  # the checkout is left alone


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run it as another user")
def test_compose_check_says_why_no_engine_can_run(tmp_path: Path) -> None:
    """What .ci/run prints when it skips: as an ordinary user."""
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-s", "--"]
        + ["--why-not"],
        input=COMPOSE_CHECK_WRAPPER.read_text(),
        cwd="/",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "not root: compose-check installs and starts its Docker engine as root"
    )
