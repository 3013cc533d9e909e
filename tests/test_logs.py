"""Logs of a real server (`manage.py run`), in either LOG_FORMAT: the JSON lines' fields, and no
token, cookie or email in the log of a busy run, whatever the format."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.observability.json_logs import JsonFormatter
from app.supabase.fake import FakeSupabase
from tests.conftest import make_settings, migrate
from tests.processes import RunningServer, running_server
from tests.supabase_headers import EXCHANGE, STORAGE_KEY, base64url_json, bearer

pytestmark = pytest.mark.processes  # the slow part of the suite: `make test-quick` leaves it out

OLD_EMAIL = "ada.secret-mail@example.com"
NEW_EMAIL = "ada.new-secret-mail@example.org"
JSON_FIELDS = {"time", "level", "logger", "message", "request_id"}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'megapolis.db'}"
    migrate(make_settings(url))
    return url


def make_superuser(sqlite_url: str, user_id: int) -> None:
    with closing(sqlite3.connect(sqlite_url.split("///", 1)[1])) as connection, connection:
        connection.execute("UPDATE users SET is_superuser = 1 WHERE id = ?", (user_id,))


def busy_run(server: RunningServer, fake: FakeSupabase, sqlite_url: str) -> list[str]:
    """Sign in every way, use the token, change the email, fail a few ways; returns every
    secret the run handled."""
    user = fake.create_user(OLD_EMAIL)
    supabase_token = fake.sign_in(user)
    session = fake.session(supabase_token)
    secrets = [supabase_token, session["refresh_token"], OLD_EMAIL, NEW_EMAIL]
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        exchanged = http.get(EXCHANGE, headers=bearer(supabase_token))
        assert exchanged.status_code == 200, exchanged.text
        api_token = exchanged.json()["token"]
        cookie = base64url_json(session)
        again = http.get(
            EXCHANGE, headers={STORAGE_KEY: cookie, "Cookie": f"{STORAGE_KEY}={cookie}"}
        )
        assert again.status_code == 200, again.text
        secrets += [api_token, again.json()["token"], cookie]

        # A superuser (only one may change an email that Supabase linked).
        make_superuser(sqlite_url, exchanged.json()["user"]["id"])
        me = http.get("/auth/me", headers={**bearer(api_token), "X-Request-ID": "who-am-i"})
        assert me.status_code == 200
        assert http.get(f"/auth/me?access_token={api_token}").status_code == 401
        forged = api_token[:-6] + "AAAAAA"
        assert http.get("/auth/me", headers=bearer(forged)).status_code == 401
        assert http.get(EXCHANGE, headers=bearer(supabase_token + "x")).status_code == 401
        changed = http.patch(
            "/api/v1/users/me", headers=bearer(api_token), json={"email": NEW_EMAIL}
        )
        assert changed.status_code == 200, changed.text
        refused = http.post("/api/v1/posts/", headers=bearer(api_token), json={"title": "t"})
        assert refused.status_code == 401  # the email change revoked the token
        invalid = http.patch("/api/v1/users/me", headers=bearer(api_token), json={"email": "x@"})
        assert invalid.status_code == 401
    # Stop cleanly: every line is written.
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    return secrets + [forged]


def secrets_in(log: str, secrets: list[str]) -> list[str]:
    """Each secret, and the signature of each token (the part no other token shares), that the
    log holds."""
    pieces = set(secrets) | {s.rsplit(".", 1)[1] for s in secrets if s.startswith("eyJ")}
    return sorted(piece for piece in pieces if piece in log)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_busy_run_logs_no_token_cookie_or_email(
    sqlite_url: str, supabase_fake: FakeSupabase, log_format: str
) -> None:
    env = {
        "LOG_FORMAT": log_format,
        "SUPABASE_URL": supabase_fake.url,
        "SUPABASE_SERVICE_ROLE_KEY": supabase_fake.service_role_key,
    }
    with running_server(sqlite_url, kind=RunningServer, env=env) as server:
        secrets = busy_run(server, supabase_fake, sqlite_url)
        log = server.text()
    assert "GET /auth/me" in log or '"route": "/auth/me"' in log  # the log was read
    assert secrets_in(log, secrets) == []
    assert supabase_fake.service_role_key not in log


def test_json_lines_have_the_fields_and_the_user(
    sqlite_url: str, supabase_fake: FakeSupabase
) -> None:
    env = {
        "LOG_FORMAT": "json",
        "SUPABASE_URL": supabase_fake.url,
        "SUPABASE_SERVICE_ROLE_KEY": supabase_fake.service_role_key,
    }
    with running_server(sqlite_url, kind=RunningServer, env=env) as server:
        busy_run(server, supabase_fake, sqlite_url)
        lines = [line for line in server.text().splitlines() if line.strip()]
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line is JSON
    assert all(JSON_FIELDS <= record.keys() for record in records), records
    assert any(r["logger"].startswith("uvicorn") for r in records)  # Uvicorn's lines too
    access = [r for r in records if r["logger"] == "app.access"]
    [me] = [r for r in access if r["request_id"] == "who-am-i"]
    assert me["method"] == "GET" and me["route"] == "/auth/me" and me["path"] == "/auth/me"
    assert me["status"] == 200 and isinstance(me["duration_ms"], float)
    assert isinstance(me["user_id"], int)
    assert me["time"].endswith("Z") and me["level"] == "INFO"
    exchanges = [r for r in access if r["route"] == "/auth/verify_supabase_token"]
    assert [r["status"] for r in exchanges] == [200, 200, 401]
    assert exchanges[0]["user_id"] == me["user_id"]
    assert "user_id" not in exchanges[2]
    patched = [r for r in access if r["method"] == "PATCH" and r["status"] == 200]
    assert [r["route"] for r in patched] == ["/api/v1/users/me"]


def test_json_formatter_writes_one_line_with_the_traceback() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.LogRecord(
            "app.errors", logging.ERROR, __file__, 1, "failed on %s", ("GET /x",), None
        )
        record.exc_info = sys.exc_info()
    record.request_id = "-"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed on GET /x" and entry["request_id"] is None
    assert "RuntimeError: boom" in entry["exception"]


def test_log_format_is_text_json_or_refused() -> None:
    assert make_settings("sqlite+aiosqlite://").LOG_FORMAT == "text"
    assert make_settings("sqlite+aiosqlite://", LOG_FORMAT=" JSON ").LOG_FORMAT == "json"
    with pytest.raises(ValidationError, match="LOG_FORMAT"):
        make_settings("sqlite+aiosqlite://", LOG_FORMAT="xml")
