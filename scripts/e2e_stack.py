"""The servers the JavaScript suites run against: the fake Supabase and the API, each on a free
port of 127.0.0.1, the API on a new SQLite database in a temporary directory.

    python scripts/e2e_stack.py [--cors-origin URL]... [--superuser EMAIL:PASSWORD]...

Used by clients/typescript/test/ (`npm test`) and by the Playwright suite's global setup
(e2e/global-setup.ts); e2e/README.md tells how to use it from a new spec. When both servers
answer, it prints one JSON line on stdout and nothing else there:

    {"apiUrl": "http://127.0.0.1:…", "supabaseUrl": "http://127.0.0.1:…",
     "supabaseKey": "sb_publishable_…", "superusers": [{"email": …, "password": …}]}

Users sign up through the fake's `POST /auth/v1/signup` (supabase-js `auth.signUp`, the email
confirmed at once). A `--superuser` is a Supabase user with that password, and a superuser of
the API (`manage.py create-superuser`), linked at its first exchange. It runs until SIGTERM,
SIGINT or the end of its standard input (so it ends with the process that started it), then
stops the API and removes the database. The API's settings come from this script alone: no
setting from the shell, no `.env` (MEGAPOLIS_ENV_FILE=/dev/null). Its log is in the file
`--api-log` (default: in the temporary directory, printed to stderr if the API does not start).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
# No developer's `.env` for this process and the API (read when app.config is imported).
NO_ENV_FILE = {"MEGAPOLIS_ENV_FILE": os.devnull}
os.environ.update(NO_ENV_FILE)

from alembic import command  # noqa: E402

from app.config import Settings, get_settings  # noqa: E402
from app.supabase.fake import FakeSupabase  # noqa: E402

SETTINGS = frozenset(Settings.model_fields)
STARTUP_LIMIT = 60.0  # seconds; a cold start on a busy 2-core machine takes 2-5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def api_environment(database_url: str, fake: FakeSupabase, origins: list[str]) -> dict[str, str]:
    """The shell's environment without any of the app's settings (nor `.env`): what the
    suites see is decided here, not by a developer's configuration."""
    inherited = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    return {
        **inherited,
        **NO_ENV_FILE,
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": secrets.token_urlsafe(32),
        "SUPABASE_URL": fake.url,
        "SUPABASE_PUBLISHABLE_KEY": fake.publishable_key,
        "SUPABASE_VERIFY_MODE": "remote",
        "CORS_ORIGINS": ",".join(origins),
        "RATE_LIMIT_EXCHANGE": "100000/minute",
        "METRICS_ENABLED": "true",
        "LOG_FORMAT": "text",
    }


def prepare_database(environment: dict[str, str], superusers: list[str]) -> None:
    """`manage.py upgrade`, then `manage.py create-superuser` for each email, in this process."""
    import manage

    os.environ.clear()
    os.environ.update(environment)
    get_settings.cache_clear()
    config = manage.alembic_config(get_settings())
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    for email in superusers:
        manage.run_on_users(manage.make_superuser(email))


def wait_until_ready(api: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if api.poll() is not None or time.monotonic() > deadline:
            sys.stderr.write(log.read_text(errors="replace"))
            raise SystemExit(f"e2e_stack: the API did not start on {url} (its log is above)")
        time.sleep(0.1)


def wait_for_the_end() -> None:
    """Until SIGTERM, SIGINT or the end of standard input."""
    done = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def read_stdin() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        done.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    done.wait()


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cors-origin", action="append", default=[], help="an origin the API allows (repeat)"
    )
    parser.add_argument(
        "--superuser", action="append", default=[], metavar="EMAIL:PASSWORD", help="(repeat)"
    )
    parser.add_argument("--api-log", type=Path, help="where the API's output goes")
    args = parser.parse_args()
    superusers = [entry.partition(":")[::2] for entry in args.superuser]
    if any(not email or not password for email, password in superusers):
        parser.error("--superuser takes EMAIL:PASSWORD")

    scratch = Path(tempfile.mkdtemp(prefix="megapolis-e2e-"))
    fake = FakeSupabase().start()
    api: subprocess.Popen[bytes] | None = None
    try:
        for email, password in superusers:
            fake.create_user(email, password=password)
        database_url = f"sqlite+aiosqlite:///{scratch / 'api.db'}"
        environment = api_environment(database_url, fake, args.cors_origin)
        prepare_database(environment, [email for email, _ in superusers])

        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        log = args.api_log or scratch / "api.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as output:
            api = subprocess.Popen(
                [sys.executable, "manage.py", "run", "--no-reload", "--port", str(port)],
                cwd=PROJECT_ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        wait_until_ready(api, api_url, log)
        ready = {
            "apiUrl": api_url,
            "supabaseUrl": fake.url,
            "supabaseKey": fake.publishable_key,
            "superusers": [{"email": email, "password": pw} for email, pw in superusers],
        }
        print(json.dumps(ready), flush=True)
        wait_for_the_end()
    finally:
        if api is not None:
            stop_process_group(api)
        fake.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
