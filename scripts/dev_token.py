"""Print an API token for an existing user, signed with the key the server uses — for trying the
API locally without Supabase: `.venv/bin/python scripts/dev_token.py you@example.com`.

Development and test only: in production tokens come from the Supabase exchange.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import ValidationError

from app.config import ConfigurationError, Settings, configured_app_env, get_settings
from app.db.database import open_session
from app.db.errors import describe_database_error, is_database_error
from app.models.user import User
from app.security import issue_token

PRODUCTION_REFUSAL = "not in production: tokens come from the Supabase exchange"


class Refusal(Exception):
    """Printed as one line, `error: ...`, exit code 1."""


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/dev_token.py",
        description=(
            "Print an API token for an existing user, signed with the key the server uses "
            "(JWT_SECRET_KEY, or the development key in .secrets/). Refuses to run with "
            "APP_ENV=production."
        ),
        epilog="Make the user first: python manage.py create-superuser EMAIL.",
    )
    parser.add_argument("email", metavar="EMAIL", help="the email of a user in the database")
    return parser


async def token_for(settings: Settings, email: str) -> str:
    async with open_session(settings) as session:
        user = await User.get_by_email(session, email)
    if user is None:
        raise Refusal(f"no user with email {email!r}")
    return issue_token(settings, user).token


def make_token(email: str) -> str:
    # APP_ENV alone first: production is refused whatever else its configuration lacks.
    if configured_app_env() == "production":
        raise Refusal(PRODUCTION_REFUSAL)
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        raise Refusal(str(exc)) from exc
    except ValidationError as exc:
        error = exc.errors()[0]
        raise Refusal(f"invalid configuration: {error['loc'][0]}: {error['msg']}") from exc
    try:
        return asyncio.run(token_for(settings, email))
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise Refusal(f"cannot use the database: {describe_database_error(exc)}") from exc


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        print(make_token(arguments.email))
    except Refusal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
