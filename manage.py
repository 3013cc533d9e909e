"""Management CLI: `python manage.py --help`."""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.config import AppEnv, ConfigurationError, Settings, get_settings
from app.db.database import open_session
from app.db.engine import create_engine
from app.db.errors import describe_database_error as describe
from app.db.errors import is_database_error
from app.db.probe import probe_database
from app.fields import Email
from app.models.audit_event import AuditEvent
from app.models.user import User
from app.observability.json_logs import uvicorn_log_config
from app.observability.multiprocess import shared_metrics_directory
from app.schemas.user import UserCreateRequest, UserUpdateRequest
from app.services.audit_event import CLI, AuditEventService
from app.services.supabase_sync import SupabaseSync, SyncTotals, TooManyDeactivations
from app.services.user import UserService
from app.supabase.admin import DEFAULT_PER_PAGE, MAX_PER_PAGE, SupabaseAdmin, SupabaseAdminError

PROJECT_ROOT = Path(__file__).resolve().parent
cli = typer.Typer(help="Megapolis API management commands.", no_args_is_help=True)

F = TypeVar("F", bound=Callable[..., Any])


class CLIError(Exception):
    """An expected failure: printed as one line, exit code 1."""


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def describe_database_error(exc: Exception, settings: Settings) -> str:
    return f"cannot use the database at {database_location(settings)}: {describe(exc)}"


def database_location(settings: Settings) -> str:
    return settings.database_url.render_as_string(hide_password=True)


def expected_errors(func: F) -> F:
    """Turn the failures a user can cause or fix into one clear line instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigurationError as exc:
            fail(str(exc))
        except ValidationError as exc:
            fail(f"invalid configuration: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
        except CLIError as exc:
            fail(str(exc))
        except CommandError as exc:
            fail(str(exc))
        except Exception as exc:
            # Either driver's (asyncpg raises its own errors when connecting), TLS, network.
            if not is_database_error(exc):
                raise
            fail(describe_database_error(exc, get_settings()))

    return wrapper  # type: ignore[return-value]


def alembic_config(settings: Settings) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["settings"] = settings
    return config


@cli.command()
@expected_errors
def run(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    reload: Annotated[bool, typer.Option(help="Restart on code changes")] = True,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (implies --no-reload)")] = 1,
) -> None:
    """Serve the API with Uvicorn."""
    import uvicorn

    settings = get_settings()  # fail here, in one line, if the configuration cannot work
    check_database_at_start(settings)
    # Uvicorn finishes in-flight requests on SIGTERM, then re-raises the signal; exit 0 then,
    # as process managers expect from a clean shutdown.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if workers > 1 and reload:
        typer.echo("--workers > 1: reload turned off")
        reload = False
    options: dict[str, Any] = {}
    if workers > 1 and "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # A new worker answers the supervisor's first health check only once it has imported
        # the app; on a busy machine that can pass uvicorn's default 5 s, and the supervisor
        # then kills and restarts it, over and over.
        options["timeout_worker_healthcheck"] = 30
    if settings.LOG_FORMAT == "json":
        options["log_config"] = uvicorn_log_config(settings.LOG_LEVEL)
    # Several workers share their metrics through a directory made for this run (and removed).
    with shared_metrics_directory(workers, settings.METRICS_ENABLED):
        uvicorn.run(
            "app.server:app",
            host=host,
            port=port,
            reload=reload,
            reload_dirs=[str(PROJECT_ROOT / "app")] if reload else None,
            workers=workers,
            access_log=False,  # app.middlewares logs one line per request, with its request id
            log_level=settings.LOG_LEVEL.lower(),
            proxy_headers=True,
            http="app.http_protocol:HttpProtocol",  # uvicorn's httptools protocol, fixed
            timeout_graceful_shutdown=20,
            **options,
        )


def check_database_at_start(settings: Settings) -> None:
    """Refuse to start when the database can never work with these settings (wrong password,
    missing database or role, TLS refused…); start anyway when it is only not there yet
    (refused, unresolved, timed out, starting up): /readyz answers 503 until it is, and
    orchestrators (Compose, Kubernetes) rely on a server that waits rather than exits."""
    not_yet = database_not_yet_available(settings)
    if not_yet is not None:
        warn(f"{not_yet}; serving anyway, /readyz answers 503 until it is")


def database_not_yet_available(settings: Settings) -> str | None:
    """None when the database answers; a CLIError when it can never work with these settings;
    else the start of a warning that says it is not there yet."""
    problem = asyncio.run(probe_database(settings))
    if problem is None:
        return None
    if problem.lasting:
        raise CLIError(f"cannot use the database at {database_location(settings)}: {problem}")
    return f"the database at {database_location(settings)} is not available yet ({problem.what})"


def warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


@cli.command()
@expected_errors
def migrate(
    message: Annotated[str, typer.Option("-m", "--message", help="Revision message")],
) -> None:
    """Autogenerate a revision from the models (the database must be at the latest one)."""
    settings = get_settings()
    config = alembic_config(settings)
    try:
        command.revision(config, message=message, autogenerate=True)
    except CommandError as exc:
        # Autogenerate compares the models with the database: one behind the latest revision
        # would yield a revision repeating the ones it lacks, so Alembic refuses.
        if "not up to date" not in str(exc):
            raise
        if not is_development_sqlite(settings):
            raise CLIError(
                "the database is not at the latest migration; "
                "run: poetry run python manage.py upgrade (then migrate again)"
            ) from exc
        # The embedded development database (a fresh checkout's): bring it up first, as
        # `make run` would.
        typer.echo("migrate: upgrading the development database to the latest migration first")
        command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True)


def is_development_sqlite(settings: Settings) -> bool:
    embedded = settings.database_url.get_backend_name() == "sqlite"
    return embedded and settings.APP_ENV is AppEnv.development


@cli.command()
@expected_errors
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
    skip_if_unavailable: Annotated[
        bool,
        typer.Option(
            help="A database that is only not there yet (refused, starting up): say so and exit "
            "0 instead of failing, so `make run` still serves (/readyz 503 until it is). A "
            "database that can never work and a failing migration still exit 1."
        ),
    ] = False,
) -> None:
    """Apply migrations up to REVISION (head by default)."""
    settings = get_settings()
    if skip_if_unavailable:
        not_yet = database_not_yet_available(settings)
        if not_yet is not None:
            warn(f"{not_yet}; not upgraded: run `manage.py upgrade` once it is")
            return
    command.upgrade(alembic_config(settings), revision)


@cli.command(context_settings={"ignore_unknown_options": True})
@expected_errors
def downgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "-1") -> None:
    """Revert migrations down to REVISION (one step by default)."""
    command.downgrade(alembic_config(get_settings()), revision)


async def create_database_if_missing(settings: Settings) -> bool:
    url = settings.database_url
    if url.get_backend_name() != "postgresql" or not url.database:
        return False
    maintenance = settings.model_copy(
        update={"DATABASE_URL": url.set(database="postgres").render_as_string(False)}
    )
    engine = create_engine(maintenance, pooled=False).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if exists:
                return False
            quoted = engine.dialect.identifier_preparer.quote(url.database)
            await connection.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        await engine.dispose()


@cli.command()
@expected_errors
def initdb() -> None:
    """Create the database if it does not exist, then upgrade it to head."""
    settings = get_settings()
    if asyncio.run(create_database_if_missing(settings)):
        typer.echo(f"created database {settings.database_url.database}")
    command.upgrade(alembic_config(settings), "head")
    typer.echo("database is at head")


T = TypeVar("T")


def run_on_users(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's database work; a database that was never migrated is a clear line."""
    try:
        return asyncio.run(coroutine)
    except DBAPIError as exc:
        reason = str(exc.orig)
        table = next((name for name in ("audit_events", "users") if name in reason), None)
        if table is not None and ("exist" in reason or "no such" in reason):
            raise CLIError(
                f"the {table} table does not exist; run `python manage.py upgrade` first"
            ) from exc
        raise


async def make_superuser(email: str) -> tuple[User, bool]:
    """Create the superuser, or promote and reactivate the user: through the same service as the
    API, audited as done by `cli`."""
    async with open_session() as session:
        user = await User.get_by_email(session, email)
        if user is None:
            created = UserCreateRequest(email=email, is_superuser=True)
            return await UserService.create_user(session, CLI, created), True
        promoted = UserUpdateRequest(is_superuser=True, is_active=True)
        return await UserService.update_user(session, CLI, user, promoted), False


@cli.command("create-superuser")
@expected_errors
def create_superuser(email: Annotated[str, typer.Argument(help="The user's email")]) -> None:
    """Create a superuser, or promote (and reactivate) an existing user."""
    try:
        normalized = TypeAdapter(Email).validate_python(email)
    except ValidationError as exc:
        raise CLIError(f"invalid email {email!r}: {exc.errors()[0]['msg']}") from exc
    user, created = run_on_users(make_superuser(normalized))
    verb = "created" if created else "promoted"
    typer.echo(f"{verb} superuser {user.email} (id {user.id})")


async def revoke_all_tokens(email: str) -> User | None:
    async with open_session() as session:
        user = await User.get_by_email(session, email)
        if user is not None:
            await UserService.revoke_tokens(session, CLI, user)
        return user


@cli.command("revoke-tokens")
@expected_errors
def revoke_tokens(email: Annotated[str, typer.Argument(help="The user's email")]) -> None:
    """Revoke every API token of a user: each answers 401 from now on."""
    user = run_on_users(revoke_all_tokens(email))
    if user is None:
        raise CLIError(f"no user with email {email!r}")
    typer.echo(f"revoked every API token of {user.email} (id {user.id})")


async def latest_events(email: str | None, limit: int) -> list[AuditEvent]:
    async with open_session() as session:
        user_id = None
        if email is not None:
            user = await User.get_by_email(session, email)
            if user is None:
                raise CLIError(f"no user with email {email!r}")
            user_id = user.id
        return await AuditEventService.latest(session, limit=limit, user_id=user_id)


def describe_event(event: AuditEvent) -> str:
    actor = event.actor if event.actor_id is None else f"{event.actor}:{event.actor_id}"
    changes = json.dumps(event.changes, ensure_ascii=False, sort_keys=True)
    return (
        f"{event.at.isoformat(timespec='seconds')} #{event.id} {actor} {event.action} "
        f"{event.target_type}:{event.target_id} {changes} request={event.request_id or '-'}"
    )


@cli.command()
@expected_errors
def audit(
    email: Annotated[
        str | None, typer.Option(help="Only events whose actor or target is this account")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many events")] = 20,
) -> None:
    """Print the latest audit events, newest first, one a line."""
    for event in run_on_users(latest_events(email, limit)):
        typer.echo(describe_event(event))


async def sync_with_supabase(
    settings: Settings, *, dry_run: bool, per_page: int, max_deactivations: int
) -> SyncTotals:
    try:
        supabase = SupabaseAdmin.from_settings(settings)
    except SupabaseAdminError as exc:
        raise CLIError(str(exc)) from exc
    try:
        async with open_session(settings) as session:
            return await SupabaseSync.run(
                session,
                supabase,
                per_page=per_page,
                max_deactivations=max_deactivations,
                dry_run=dry_run,
                echo=typer.echo,
                warn=warn,
            )
    except (SupabaseAdminError, TooManyDeactivations) as exc:
        raise CLIError(str(exc)) from exc
    finally:
        await supabase.aclose()


# More than this many accounts whose Supabase user is gone, in one run, is more likely a
# SUPABASE_URL pointing at another project than users deleted while every webhook call failed.
DEFAULT_MAX_DEACTIVATIONS = 100


@cli.command("sync-supabase")
@expected_errors
def sync_supabase(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; change nothing")
    ] = False,
    per_page: Annotated[
        int, typer.Option(min=1, max=MAX_PER_PAGE, help="Users per page of Supabase's list")
    ] = DEFAULT_PER_PAGE,
    max_deactivations: Annotated[
        int,
        typer.Option(
            min=0,
            help="Refuse (changing nothing) when more accounts than this would be deactivated",
        ),
    ] = DEFAULT_MAX_DEACTIVATIONS,
) -> None:
    """Apply Supabase's users to the linked accounts, as its webhook calls would have (deleted:
    deactivated; banned: tokens revoked; confirmed new email: updated). For calls that were
    lost: Supabase does not retry them. Needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (the
    secret or service_role key)."""
    settings = get_settings()
    totals = run_on_users(
        sync_with_supabase(
            settings, dry_run=dry_run, per_page=per_page, max_deactivations=max_deactivations
        )
    )
    typer.echo(totals.summary())


@cli.command("dev-supabase")
def dev_supabase(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 54321,
    email: Annotated[
        str, typer.Option(help="The demo user signed in at start")
    ] = "dev@example.com",
) -> None:
    """Serve a fake Supabase Auth on 127.0.0.1 to try sign-in without a project (not in
    production)."""
    from app.supabase.dev_server import DevServerError, serve

    try:
        serve(port=port, email=email, echo=typer.echo)
    except DevServerError as exc:
        fail(str(exc))


# --- new-resource: a resource like posts, from app/scaffold/templates --------------------------


@cli.command("new-resource")
def new_resource(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Singular, snake_case (e.g. comment)")
    ],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            metavar="NAME:TYPE",
            help="name:type, repeatable; type is str, text, int, float, bool or datetime "
            "(default: one name:str)",
        ),
    ] = None,
) -> None:
    """Write the model, schemas, service, routes and tests of a resource owned by a user."""
    from app.scaffold.generator import new_resource as write_resource
    from app.scaffold.spec import ScaffoldError

    try:
        written = write_resource(PROJECT_ROOT, name, field or [])
    except ScaffoldError as exc:
        fail(str(exc))
    for path in written.created:
        typer.echo(f"created {path.relative_to(PROJECT_ROOT)}")
    for path in written.changed:
        typer.echo(f"changed {path.relative_to(PROJECT_ROOT)}")
    if not written.formatted:
        typer.echo("ruff is not installed: the files are not formatted (run `make format`)")
    typer.echo(
        f'next: python manage.py migrate -m "add {written.plural}" && python manage.py upgrade'
    )


if __name__ == "__main__":
    sys.exit(cli())
