"""`manage.py dev-supabase`: try sign-in without a Supabase project.

Serves the fake Supabase Auth (app/supabase/fake) on 127.0.0.1 only, signs in a demo user, and
prints the two settings that point the API at it and a ready-to-use Supabase access token. More
tokens come from the fake's own `POST /auth/v1/token?grant_type=password` (and new users from
`/auth/v1/signup`), the endpoints supabase-js calls, so a front end can sign in against it too.

It refuses to start unless APP_ENV is `development` or `test` (read from the environment and
`.env` as the app reads it): it never runs where the API runs in production. Its keys are fixed,
so the lines added to `.env` stay valid across restarts, and user ids derive from the email, so
a restarted fake gives the API the same Supabase user. Nothing it holds is a secret.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from app.config import configured_app_env
from app.supabase.fake import FakeSupabase

DEFAULT_PORT = 54321  # the Supabase CLI's local API port
DEFAULT_EMAIL = "dev@example.com"
DEV_PASSWORD = "dev-password"
DEV_PUBLISHABLE_KEY = "sb_publishable_dev-supabase_not-a-secret"
DEV_SECRET_KEY = "sb_secret_dev-supabase_not-a-secret"
ALLOWED_ENVIRONMENTS = ("development", "test")
API_URL = "http://127.0.0.1:8000"  # where `make run` serves


class DevServerError(Exception):
    """The dev server cannot run; the message says why, in one line."""


def check_environment() -> None:
    app_env = configured_app_env()
    if app_env not in ALLOWED_ENVIRONMENTS:
        raise DevServerError(
            f"dev-supabase is for development only and refuses to run with APP_ENV={app_env}"
        )


def serve(
    *,
    port: int = DEFAULT_PORT,
    email: str = DEFAULT_EMAIL,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGINT / SIGTERM (or `stop` is set)."""
    check_environment()
    fake = FakeSupabase(
        publishable_key=DEV_PUBLISHABLE_KEY, secret_key=DEV_SECRET_KEY, stable_ids=True
    )
    try:
        fake.start(port)
    except OSError as exc:
        raise DevServerError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}): "
            "choose another port with --port"
        ) from exc
    try:
        user = fake.create_user(email.lower(), password=DEV_PASSWORD)
        echo(instructions(fake, email.lower(), fake.sign_in(user)))
        _wait(stop or threading.Event())
    finally:
        fake.stop()
    echo("dev-supabase stopped")


def instructions(fake: FakeSupabase, email: str, token: str) -> str:
    token_url = f"{fake.url}/auth/v1/token?grant_type=password"
    credentials = f'{{"email": "{email}", "password": "{DEV_PASSWORD}"}}'
    return f"""\
Fake Supabase Auth (development only) on {fake.url}, loopback only. Ctrl-C stops it.

1. Point the API at it: put these lines in .env (or export them in the shell of `make run`),
   then start (or restart) `make run`:

export SUPABASE_URL={fake.url}
export SUPABASE_PUBLISHABLE_KEY={fake.publishable_key}

2. {email} (password {DEV_PASSWORD}) is signed in; its Supabase access token, valid 1 hour:

export SUPABASE_TOKEN={token}

3. Exchange it for the API's token, and use that:

API_TOKEN=$(curl -s {API_URL}/auth/verify_supabase_token \\
  -H "Authorization: Bearer $SUPABASE_TOKEN" | {_read_json_field("token")})
curl -s {API_URL}/auth/me -H "Authorization: Bearer $API_TOKEN"

More Supabase tokens while it runs (the calls supabase-js makes; /auth/v1/signup with another
email and a password of 6+ characters adds a user, its email confirmed at once):

SUPABASE_TOKEN=$(curl -s -X POST '{token_url}' \\
  -H 'apikey: {fake.publishable_key}' -H 'Content-Type: application/json' \\
  -d '{credentials}' | {_read_json_field("access_token")})
"""


def _read_json_field(name: str) -> str:
    return f"python3 -c 'import json, sys; print(json.load(sys.stdin)[\"{name}\"])'"


def _wait(stop: threading.Event) -> None:
    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, request_stop) if in_main_thread else None
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
