"""Print an API token for an existing user, signed with the key the server uses — for trying the
API locally without Supabase: `poetry run python scripts/dev_token.py you@example.com`.

Development and test only: in production tokens come from the Supabase exchange.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import AppEnv, get_settings
from app.db.database import open_session
from app.models.user import User
from app.security import issue_token


async def token_for(email: str) -> str | None:
    settings = get_settings()
    async with open_session(settings) as session:
        user = await User.get_by_email(session, email)
    return None if user is None else issue_token(settings, user).token


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python scripts/dev_token.py EMAIL", file=sys.stderr)
        return 2
    if get_settings().APP_ENV is AppEnv.production:
        print("error: not in production: tokens come from the Supabase exchange", file=sys.stderr)
        return 1
    token = asyncio.run(token_for(argv[1]))
    if token is None:
        print(f"error: no user with email {argv[1]!r}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
