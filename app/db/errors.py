"""One line for any database failure, from either driver: what is wrong and what to set.

asyncpg raises its own exceptions (with SQLSTATE codes), psycopg raises OperationalError with
libpq's text (no SQLSTATE when connecting), SQLAlchemy wraps both (and its message carries the
SQL and its parameters, which must not reach a log), and TLS and the network raise `ssl` and
`OSError`s. `diagnose()` looks through the whole chain for the first known cause; the CLI prints
it, the start-up check decides with `lasting` whether waiting can help, and the 503 handlers log
it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import asyncpg
import psycopg
from sqlalchemy.exc import SQLAlchemyError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

logger = logging.getLogger("app.db")


@dataclass(frozen=True)
class DatabaseProblem:
    what: str  # what is wrong
    fix: str  # what to set or do
    lasting: bool  # True: waiting will not help (wrong password, missing database, bad TLS, …)

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}" if self.fix else self.what


def describe_database_error(exc: BaseException) -> str:
    """One line: what is wrong and what to set."""
    return str(diagnose(exc))


def log_database_unavailable(exc: BaseException, log: logging.Logger = logger) -> None:
    """The log line behind a 503."""
    log.warning("Database unavailable: %s", describe_database_error(exc))


DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,  # ssl.SSLError, ConnectionRefusedError, socket.gaierror…
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    psycopg.Error,
)


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_ERRORS)


# --- the causes, most specific first --------------------------------------------------------

Rule = Callable[[BaseException, str, str | None], DatabaseProblem | None]
RULES: list[Rule] = []


def rule(func: Rule) -> Rule:
    RULES.append(func)
    return func


def _match(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.IGNORECASE)


@rule
def _missing_database(_: BaseException, text: str, sqlstate: str | None) -> DatabaseProblem | None:
    found = _match(r'database "([^"]*)" does not exist', text)
    if found or sqlstate == "3D000":
        name = f'database "{found.group(1)}"' if found else "the database"
        return DatabaseProblem(
            f"{name} does not exist",
            "create it with `python manage.py initdb`, or fix the database name in DATABASE_URL",
            lasting=True,
        )
    return None


@rule
def _unknown_role(_: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    found = _match(r'role "([^"]*)" does not exist', text)
    if found:
        return DatabaseProblem(
            f'role "{found.group(1)}" does not exist',
            "fix the user name in DATABASE_URL (or create that role on the server)",
            lasting=True,
        )
    return None


@rule
def _wrong_password(_: BaseException, text: str, sqlstate: str | None) -> DatabaseProblem | None:
    found = _match(r'password authentication failed for user "([^"]*)"', text)
    if found or sqlstate == "28P01":
        user = f' for user "{found.group(1)}"' if found else ""
        return DatabaseProblem(
            f"password authentication failed{user}",
            "fix the password in DATABASE_URL (percent-encode special characters)",
            lasting=True,
        )
    if _match(r"no password supplied|password is required|password authentication", text):
        return DatabaseProblem(
            "the server asks for a password and DATABASE_URL has none",
            "add it: postgresql://user:password@host:5432/dbname",
            lasting=True,
        )
    return None


@rule
def _supabase_pooler_user(_: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if _match(r"tenant or user not found", text):
        return DatabaseProblem(
            "Supabase's pooler does not know this user (Tenant or user not found)",
            "its user name is postgres.<project-ref>: copy the connection string from the "
            "Supabase dashboard (Connect)",
            lasting=True,
        )
    return None


@rule
def _pg_hba(_: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if _match(r"no pg_hba\.conf entry.*no encryption", text):
        return DatabaseProblem(
            "the server accepts only TLS connections from here",
            "add ?sslmode=require (or verify-full) to DATABASE_URL",
            lasting=True,
        )
    if _match(r"pg_hba\.conf", text):
        return DatabaseProblem(
            f"the server refuses this host, user or database ({_clean(text)})",
            "fix DATABASE_URL, or ask the server's administrator to allow it in pg_hba.conf",
            lasting=True,
        )
    return None


@rule
def _server_without_tls(_: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if _match(r"rejected SSL upgrade|server does not support SSL", text):
        return DatabaseProblem(
            "the server does not accept TLS connections, and DATABASE_URL requires TLS",
            "set sslmode=prefer (or remove sslmode) in DATABASE_URL, or turn ssl on on the server",
            lasting=True,
        )
    return None


@rule
def _certificate(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    detail = exc.verify_message if isinstance(exc, ssl.SSLCertVerificationError) else text
    if _match(r"mismatch|does not match host name|not valid for", detail):
        return DatabaseProblem(
            f"the server's TLS certificate is not valid for this host name ({_clean(detail)})",
            "use the host name the certificate was issued for in DATABASE_URL, or "
            "sslmode=verify-ca to check only who signed it",
            lasting=True,
        )
    if isinstance(exc, ssl.SSLCertVerificationError) or _match(r"certificate verify failed", text):
        return DatabaseProblem(
            f"the server's TLS certificate is not signed by a trusted authority ({_clean(detail)})",
            "set sslrootcert=/path/to/the-CA-certificate (your provider's) in DATABASE_URL, or "
            "sslmode=require to encrypt without verifying",
            lasting=True,
        )
    return None


@rule
def _certificate_file(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    found = _match(r'(?:root )?certificate file "([^"]*)" does not exist', text) or _match(
        r'could not (?:read|open|load) [a-z ]*(?:certificate|key|crl)[a-z ]* "([^"]*)"', text
    )
    # asyncpg loads them with the ssl module, whose OSError names no file (an OSError that
    # names one comes from elsewhere: a migration file, a log…).
    unreadable = isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError))
    if found is None and not (unreadable and getattr(exc, "filename", None) is None):
        return None
    name = f'"{found.group(1)}"' if found is not None else "(sslrootcert, sslcert or sslkey)"
    return DatabaseProblem(
        f"cannot read the TLS file {name} named in DATABASE_URL",
        "set sslrootcert (or sslcert, sslkey) to a readable file; sslrootcert=system uses "
        "the system's certificate authorities",
        lasting=True,
    )


@rule
def _pooler_parameter(_: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if _match(r"unsupported startup parameter", text):
        return DatabaseProblem(
            f"a connection pooler refuses a startup parameter ({_clean(text)})",
            "set DATABASE_POOL_MODE=transaction for PgBouncer or Supabase's transaction pooler",
            lasting=True,
        )
    return None


@rule
def _unknown_parameter(_: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    found = _match(
        r"invalid connection option \"([^\"]*)\"|unexpected keyword argument '(\w+)'", text
    )
    if found:
        name = found.group(1) or found.group(2)
        return DatabaseProblem(
            f"the driver does not know the parameter {name!r}",
            "remove it from DATABASE_URL",
            lasting=True,
        )
    return None


@rule
def _refused(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if isinstance(exc, ConnectionRefusedError) or _match(r"connection refused", text):
        return DatabaseProblem(
            "nothing accepts connections at that host and port (connection refused)",
            "start PostgreSQL, or fix the host and port in DATABASE_URL",
            lasting=False,
        )
    return None


@rule
def _unresolved(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    pattern = r"could not translate host name|failed to resolve host|name or service not known"
    if isinstance(exc, socket.gaierror) or _match(pattern, text):
        return DatabaseProblem(
            f"the database host name does not resolve ({_clean(text)})",
            "fix the host in DATABASE_URL (Supabase's direct db.<ref>.supabase.co has only an "
            "IPv6 address: without IPv6 use its session pooler's host)",
            lasting=False,
        )
    return None


@rule
def _unreachable(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    codes = (errno.ENETUNREACH, errno.EHOSTUNREACH)
    if (isinstance(exc, OSError) and exc.errno in codes) or _match(
        r"network is unreachable|no route to host", text
    ):
        return DatabaseProblem(
            f"the database host cannot be reached from here ({_clean(text)})",
            "check the host in DATABASE_URL and the network (an IPv6-only host needs IPv6)",
            lasting=False,
        )
    return None


@rule
def _no_slots(_: BaseException, text: str, sqlstate: str | None) -> DatabaseProblem | None:
    pattern = r"too many (clients|connections)|remaining connection slots|max_client_conn"
    if sqlstate == "53300" or _match(pattern, text):
        return DatabaseProblem(
            "the server has no free connection slots",
            "lower DATABASE_POOL_SIZE and DATABASE_MAX_OVERFLOW (they count per worker and "
            "replica), or raise the server's max_connections, or connect through a pooler",
            lasting=False,
        )
    return None


@rule
def _not_accepting(_: BaseException, text: str, sqlstate: str | None) -> DatabaseProblem | None:
    pattern = (
        r"the database system is (starting up|shutting down|in recovery|not yet accepting)"
        r"|terminating connection due to administrator command"
    )
    if sqlstate in ("57P01", "57P02", "57P03") or _match(pattern, text):
        return DatabaseProblem(
            f"the server is starting up or shutting down ({_clean(text)})",
            "wait for it; requests answer 503 until then",
            lasting=False,
        )
    return None


@rule
def _pool_exhausted(exc: BaseException, _: str, __: str | None) -> DatabaseProblem | None:
    if isinstance(exc, PoolTimeoutError):
        return DatabaseProblem(
            "every pooled connection stayed busy for DATABASE_POOL_TIMEOUT",
            "raise DATABASE_POOL_SIZE / DATABASE_MAX_OVERFLOW, or look for slow requests",
            lasting=False,
        )
    return None


@rule
def _statement_timeout(_: BaseException, text: str, sqlstate: str | None) -> DatabaseProblem | None:
    if sqlstate == "57014" or _match(r"canceling statement due to statement timeout", text):
        return DatabaseProblem(
            "a statement ran longer than DATABASE_STATEMENT_TIMEOUT",
            "make it faster, or raise DATABASE_STATEMENT_TIMEOUT",
            lasting=False,
        )
    return None


@rule
def _timeout(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or _match(
        r"timeout expired|timed out|did not answer within", text
    ):
        return DatabaseProblem(
            "the database did not answer in time",
            "check that the host and port in DATABASE_URL reach PostgreSQL (a firewall that drops "
            "packets looks like this), or raise DATABASE_CONNECT_TIMEOUT",
            lasting=False,
        )
    return None


@rule
def _lost(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    pattern = (
        r"server closed the connection|connection was closed|connection is closed"
        r"|consuming input failed|connection reset|connection lost|broken pipe"
        r"|connection does not exist|has been closed|EOF detected"
    )
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) or _match(pattern, text):
        return DatabaseProblem(
            "the connection to the database was lost",
            "the next request opens a new one; if this keeps happening, check the server's log "
            "and any pooler or proxy in between",
            lasting=False,
        )
    return None


@rule
def _tls_other(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if isinstance(exc, ssl.SSLError) or _match(r"\bSSL\b", text):
        return DatabaseProblem(
            f"the TLS handshake with the server failed ({_clean(text)})",
            "check sslmode and the certificate files in DATABASE_URL",
            lasting=False,
        )
    return None


@rule
def _missing_table(_: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    found = _match(r'relation "([^"]*)" does not exist|no such table: (\w+)', text)
    if found:
        return DatabaseProblem(
            f"the table {found.group(1) or found.group(2)} does not exist",
            "run `python manage.py upgrade`",
            lasting=True,
        )
    return None


@rule
def _sqlite_file(_: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if _match(r"unable to open database file", text):
        return DatabaseProblem(
            "cannot open the SQLite database file",
            "check that its directory exists and is writable, or fix DATABASE_URL",
            lasting=True,
        )
    if _match(r"readonly database|read-only transaction", text):
        return DatabaseProblem(
            "the database is read-only",
            "point DATABASE_URL at a writable database (the primary, not a replica)",
            lasting=True,
        )
    return None


@rule
def _client_configuration(exc: BaseException, text: str, __: str | None) -> DatabaseProblem | None:
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return DatabaseProblem(_clean(text), "fix DATABASE_URL", lasting=True)
    return None


# --- reading the chain ----------------------------------------------------------------------


def diagnose(exc: BaseException) -> DatabaseProblem:
    chain = list(_chain(exc))
    for check in RULES:
        for link in chain:
            problem = check(link, _text(link), _sqlstate(link))
            if problem is not None:
                return problem
    root = next((link for link in chain if not isinstance(link, SQLAlchemyError)), exc)
    return DatabaseProblem(
        _clean(_text(root)) or type(root).__name__,
        "check DATABASE_URL and the database server's log",
        lasting=False,
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what SQLAlchemy wrapped (`orig`), and their causes, each once."""
    seen: set[int] = set()
    pending = [exc]
    while pending and len(seen) < 20:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(nested, BaseException):
                pending.append(nested)


def _text(exc: BaseException) -> str:
    if isinstance(exc, StatementError):
        # Its text repeats the driver's and adds the SQL and its parameters: never shown.
        return ""
    return str(exc)


def _sqlstate(exc: BaseException) -> str | None:
    value = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return value if isinstance(value, str) else None


def _clean(text: str) -> str:
    """libpq's and asyncpg's text on one line, without the parts that repeat DATABASE_URL."""
    text = re.sub(r"^connection failed: ", "", text.strip())
    text = re.sub(r'connection to server (at|on) "[^"]*"(, port \d+)? failed: ', "", text)
    text = re.sub(r"\b(FATAL|ERROR):\s+", "", text)
    text = re.sub(r"\[SSL: [A-Z_]+\] ", "", text)
    text = re.sub(r" \(_ssl\.c:\d+\)", "", text)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first.rstrip(".")
