"""DATABASE_URL: from what people paste to what SQLAlchemy and each driver accept.

Two steps, at two moments:
- `normalize_database_url()` runs when the settings are read. It maps the schemes hosting
  providers hand out (`postgres://`, `postgresql://`) to the default async driver, resolves a
  relative SQLite path against the project (not the working directory), and refuses what cannot
  work (an unparsable string, another database, a sync driver, a query parameter the driver does
  not know) with a `DatabaseURLError` whose message says what to set.
- `connection_arguments()` runs when an engine is made. libpq's connection parameters in the
  query (`sslmode`, `sslrootcert`, `application_name`, `options`, `connect_timeout`, …) pass
  through to psycopg, which is libpq; asyncpg takes none of them as keyword arguments
  (`connect() got an unexpected keyword argument 'sslmode'`), so they are moved to where asyncpg
  reads them: the SSL ones into a query-only `dsn`, which asyncpg parses with libpq's rules
  (`prefer` and `allow` included), the others into its own arguments.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DRIVER = "postgresql+asyncpg"
EXAMPLES = (
    "postgresql://user:password@host:5432/dbname (asyncpg), "
    "postgresql+psycopg://user:password@host:5432/dbname (psycopg 3) "
    "or sqlite+aiosqlite:///./megapolis.db"
)

# What each accepted scheme becomes.
SCHEMES = {
    "postgres": DEFAULT_DRIVER,
    "postgresql": DEFAULT_DRIVER,
    "postgres+asyncpg": DEFAULT_DRIVER,
    "postgresql+asyncpg": DEFAULT_DRIVER,
    "postgres+psycopg": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Query parameters that are ours, removed before the driver sees the URL (app/db/engine.py).
APP_PARAMETERS = frozenset({"pgbouncer"})

# libpq parameters that asyncpg reads from a DSN with libpq's meaning.
ASYNCPG_DSN_PARAMETERS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "sslnegotiation",
        "service",
    }
)
# libpq parameters sent to the server as startup parameters, which asyncpg calls server_settings.
ASYNCPG_SERVER_SETTINGS = frozenset({"application_name", "options"})
# Keyword arguments of asyncpg.connect() (and of SQLAlchemy's asyncpg dialect) as they are.
ASYNCPG_KEYWORDS = frozenset(
    {
        "host",
        "ssl",
        "direct_tls",
        "passfile",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "prepared_statement_cache_size",
    }
)
# libpq parameters asyncpg has no equivalent for: dropped (see docs/configuration.md, DATABASE_URL).
ASYNCPG_IGNORED = frozenset(
    {
        "channel_binding",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslcompression",
        "sslsni",
        "sslcertmode",
        "gssencmode",
        "gssdelegation",
        "fallback_application_name",
        "client_encoding",
        "load_balance_hosts",
    }
)
ASYNCPG_ACCEPTED = (
    ASYNCPG_DSN_PARAMETERS
    | ASYNCPG_SERVER_SETTINGS
    | ASYNCPG_KEYWORDS
    | ASYNCPG_IGNORED
    | APP_PARAMETERS
    | {"connect_timeout"}
)


class DatabaseURLError(ValueError):
    """DATABASE_URL cannot work; the message says what to set."""


def normalize_database_url(value: str, project_root: Path) -> str:
    """The URL the app uses for `value`, or DatabaseURLError saying what to set instead."""
    value = value.strip()
    match = re.match(r"([A-Za-z][A-Za-z0-9+._-]*)://", value)
    if match is None:
        if "=" in value and "://" not in value:
            raise DatabaseURLError(
                "DATABASE_URL looks like a libpq keyword/value string (host=... dbname=...); "
                f"write it as a URL instead: {EXAMPLES}"
            )
        raise DatabaseURLError(f"DATABASE_URL is not a database URL; set it like {EXAMPLES}")
    scheme = match.group(1).lower()
    target = SCHEMES.get(scheme)
    if target is None:
        raise DatabaseURLError(_unsupported_scheme(scheme))
    try:
        url = make_url(target + value[match.end(1) :])
    except (ArgumentError, ValueError) as exc:
        if "int()" in str(exc):
            raise DatabaseURLError(
                "the port in DATABASE_URL is not a number; set it like postgresql://user:"
                "password@host:5432/dbname, with special characters in the password "
                "percent-encoded ('/' as %2F, ':' as %3A)"
            ) from None
        raise DatabaseURLError(
            f"DATABASE_URL cannot be parsed ({_first_line(exc)}); set it like {EXAMPLES}, "
            "with special characters in the user name or password percent-encoded"
        ) from None
    if url.get_backend_name() == "sqlite":
        return _absolute_sqlite(url, project_root).render_as_string(hide_password=False)
    _check_postgres(url)
    return _with_ssl_defaults(url).render_as_string(hide_password=False)


def _unsupported_scheme(scheme: str) -> str:
    backend, _, driver = scheme.partition("+")
    if backend in ("postgres", "postgresql"):
        return (
            f"DATABASE_URL asks for the driver {driver!r}, which this API does not use "
            "(it needs an async one): set postgresql://… (asyncpg) or postgresql+psycopg://… "
            "(psycopg 3)"
        )
    if backend == "sqlite":
        return "DATABASE_URL asks for a sync SQLite driver: set sqlite+aiosqlite:///path.db"
    return (
        f"DATABASE_URL is a {backend} URL; this API works with PostgreSQL and SQLite only: "
        f"set {EXAMPLES}"
    )


def _absolute_sqlite(url: URL, project_root: Path) -> URL:
    """A relative path is relative to the project, wherever manage.py or the server is run."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = project_root / path
    return url.set(database=str(path.resolve()))


def _query(url: URL) -> dict[str, str]:
    """The query, one value a key (the last one wins, as in libpq)."""
    return {
        key: value[-1] if isinstance(value, tuple) else value for key, value in url.query.items()
    }


def _check_postgres(url: URL) -> None:
    if url.host and "@" in url.host:
        raise DatabaseURLError(
            "DATABASE_URL has an '@' in its password or user name: percent-encode it as %40 "
            "(and '#', '/', ':' as %23, %2F, %3A)"
        )
    query = _query(url)
    sslmode = query.get("sslmode")
    if sslmode is not None and sslmode not in SSL_MODES:
        raise DatabaseURLError(
            f"DATABASE_URL has sslmode={sslmode}; set one of {', '.join(SSL_MODES)}"
        )
    timeout = query.get("connect_timeout")
    if timeout is not None and not re.fullmatch(r"\d+(\.\d+)?", timeout.strip()):
        raise DatabaseURLError(
            f"DATABASE_URL has connect_timeout={timeout}; set a number of seconds"
        )
    if query.get("sslrootcert") == "system" and sslmode not in (None, "verify-full"):
        raise DatabaseURLError(
            f"DATABASE_URL has sslrootcert=system with sslmode={sslmode}; the system's "
            "certificate authorities go with sslmode=verify-full (libpq's rule): set that"
        )
    if url.get_driver_name() == "asyncpg":
        unknown = sorted(set(query) - ASYNCPG_ACCEPTED)
        if unknown:
            raise DatabaseURLError(
                f"DATABASE_URL has the parameter {unknown[0]!r}, which asyncpg does not "
                "understand: remove it, or use psycopg (postgresql+psycopg://…), which takes "
                "every libpq parameter"
            )
        return
    libpq = {key: value for key, value in query.items() if key not in APP_PARAMETERS}
    try:
        psycopg.conninfo.make_conninfo("", **libpq)
    except psycopg.ProgrammingError as exc:
        raise DatabaseURLError(f"DATABASE_URL: {_first_line(exc)}; remove that parameter") from None


def _with_ssl_defaults(url: URL) -> URL:
    """`sslrootcert=system` alone means verify-full in libpq; say so for asyncpg too."""
    if url.query.get("sslrootcert") == "system" and "sslmode" not in url.query:
        return url.update_query_dict({"sslmode": "verify-full"})
    return url


def connection_arguments(url: URL, connect_args: dict[str, Any]) -> tuple[URL, dict[str, Any]]:
    """The URL and connect_args to give create_async_engine(), libpq's parameters moved to
    where the driver reads them. Parameters in the URL win over the settings' defaults
    (`connect_timeout`, `application_name`); `options` adds to the statement timeout."""
    if url.get_backend_name() != "postgresql" or not url.query:
        return url, connect_args
    query = _query(url)
    arguments = dict(connect_args)
    if url.get_driver_name() == "asyncpg":
        moved = set(query) - ASYNCPG_KEYWORDS
        arguments.update(_asyncpg_arguments(query, arguments))
    else:
        moved = set(query) & (set(arguments) | {"options"})
        for key in moved:
            if key == "options" and "options" in arguments:
                arguments["options"] = f"{query['options']} {arguments['options']}"
            else:
                arguments[key] = query[key]
    return url.difference_update_query(moved), arguments


def _asyncpg_arguments(query: dict[str, str], current: dict[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    tls = {key: value for key, value in query.items() if key in ASYNCPG_DSN_PARAMETERS}
    if tls.get("sslrootcert") == "system":
        # libpq: the system's trusted roots, and verify-full. asyncpg would look for a file
        # named "system"; a default context is exactly that (it honours SSL_CERT_FILE too).
        context = ssl.create_default_context()
        if tls.get("sslcert"):
            context.load_cert_chain(
                tls["sslcert"], tls.get("sslkey"), password=tls.get("sslpassword")
            )
        arguments["ssl"] = context
        tls = {k: v for k, v in tls.items() if k not in ("sslmode", "sslrootcert")}
    if tls:
        arguments["dsn"] = "postgresql://?" + urlencode(tls)
    server_settings = {key: value for key, value in query.items() if key in ASYNCPG_SERVER_SETTINGS}
    if server_settings:
        arguments["server_settings"] = {**current.get("server_settings", {}), **server_settings}
    if "connect_timeout" in query:
        arguments["timeout"] = float(query["connect_timeout"])
    return arguments


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
