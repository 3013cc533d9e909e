"""GET /auth/verify_supabase_token when it cannot succeed: every answer Supabase can give, every
malformed header, outages and configuration mistakes, against the loopback fake Supabase.

None of these reach the user table, so one SQLite database is enough (no PostgreSQL run)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
import pytest

from app.supabase.fake import USER_PATH, FakeSupabase, Scripted
from tests.conftest import SupabaseAppFactory, asgi_client, make_settings, migrate
from tests.supabase_headers import EXCHANGE, STORAGE_KEY, base64url_json, bearer

INVALID_TOKEN = "Invalid or expired Supabase token"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('supabase')) / 'errors.db'}"
    migrate(make_settings(url))
    return url


def assert_unauthorized(response: httpx.Response, detail: str = INVALID_TOKEN) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"].startswith("Bearer")


def assert_unavailable(response: httpx.Response, *, retry_after: str | None = "5") -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("retry-after") == retry_after
    assert "detail" in response.json()


class TestSupabaseRefusesTheToken:
    """Supabase answers 400/401/403/404 → 401, and it was asked exactly once."""

    async def test_expired_token(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"), expires_in=-60)
        assert_unauthorized(await supabase_client.get(EXCHANGE, headers=bearer(token)))
        assert [call.bearer for call in supabase_fake.user_calls] == [token]

    async def test_bad_signature(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        claims = {"sub": user.id, "aud": "authenticated", "role": "authenticated", "exp": 2**40}
        token = supabase_fake.mint(claims, algorithm="HS256", secret="another-secret" * 4)
        assert_unauthorized(await supabase_client.get(EXCHANGE, headers=bearer(token)))
        assert len(supabase_fake.user_calls) == 1

    @pytest.mark.parametrize("change", ["sign_out", "delete_user", "ban_user"])
    async def test_signed_out_deleted_or_banned(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, change: str
    ) -> None:
        user = supabase_fake.create_user("a@example.com")
        token = supabase_fake.sign_in(user)
        if change == "sign_out":
            supabase_fake.sign_out(token)
        else:
            getattr(supabase_fake, change)(user)
        assert_unauthorized(await supabase_client.get(EXCHANGE, headers=bearer(token)))
        assert len(supabase_fake.user_calls) == 1

    @pytest.mark.parametrize(
        "claims",
        [
            pytest.param({"sub": "not-a-uuid"}, id="sub not a UUID (400)"),
            pytest.param({"sub": None}, id="no sub (403)"),
        ],
    )
    async def test_bad_claims(
        self,
        supabase_client: httpx.AsyncClient,
        supabase_fake: FakeSupabase,
        claims: dict[str, str],
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"), claims=claims)
        assert_unauthorized(await supabase_client.get(EXCHANGE, headers=bearer(token)))
        assert len(supabase_fake.user_calls) == 1

    @pytest.mark.parametrize("key", ["anon_key", "service_role_key"])
    async def test_an_api_key_is_not_a_user_token(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, key: str
    ) -> None:
        token = getattr(supabase_fake, key)
        assert_unauthorized(await supabase_client.get(EXCHANGE, headers=bearer(token)))

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param(
                Scripted(403, {"code": 403, "error_code": "bad_jwt", "msg": "invalid JWT: x"}),
                id="403 bad_jwt, body without the version header",
            ),
            pytest.param(
                Scripted(403, {"code": "bad_jwt", "message": "invalid JWT: x"}),
                id="403 bad_jwt, 2024-01-01 body",
            ),
            pytest.param(
                Scripted(401, {"code": 401, "msg": "invalid JWT: token is expired"}),
                id="legacy 401",
            ),
            pytest.param(Scripted(404, {"code": 404, "msg": "User not found"}), id="legacy 404"),
            pytest.param(
                Scripted(401, {"code": "no_authorization", "message": "This endpoint requires"}),
                id="GoTrue 401 in the 2024-01-01 shape is not a gateway refusal",
            ),
            pytest.param(Scripted(400, "", content_type="text/plain"), id="400, empty body"),
        ],
    )
    async def test_every_refusal_shape(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, answer: Scripted
    ) -> None:
        supabase_fake.script(USER_PATH, answer)
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        assert_unauthorized(await supabase_client.get(EXCHANGE, headers=bearer(token)))


class TestSupabaseRefusesOurKey:
    """The gateway refusing our apikey is our configuration, not the caller's token: 503."""

    @pytest.mark.parametrize(
        ("service_role_key", "seen"),
        [("sb_secret_wrong", "sb_secret_wrong"), (None, None)],
        ids=["wrong key", "no key"],
    )
    async def test_wrong_or_missing_key(
        self,
        supabase_app_factory: SupabaseAppFactory,
        supabase_fake: FakeSupabase,
        app_log: pytest.LogCaptureFixture,
        service_role_key: str | None,
        seen: str | None,
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        async with (
            supabase_app_factory(SUPABASE_SERVICE_ROLE_KEY=service_role_key) as app,
            asgi_client(app) as client,
        ):
            response = await client.get(EXCHANGE, headers=bearer(token))
        assert_unavailable(response, retry_after=None)
        assert "misconfigured" in response.json()["detail"]
        assert [call.apikey for call in supabase_fake.user_calls] == [seen]
        errors = [r for r in app_log.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "SUPABASE_SERVICE_ROLE_KEY" in errors[0].getMessage()

    async def test_kong_refusal(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        supabase_fake.script(
            USER_PATH, Scripted(401, {"message": "Invalid authentication credentials"})
        )
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        assert_unavailable(
            await supabase_client.get(EXCHANGE, headers=bearer(token)), retry_after=None
        )


class TestSupabaseUnavailable:
    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param(
                Scripted.gotrue_error(500, "unexpected_failure", "Unexpected failure"), id="500"
            ),
            pytest.param(
                Scripted(502, "<html>502 Bad Gateway</html>", content_type="text/html"), id="502"
            ),
            pytest.param(Scripted(503, {"message": "Service Unavailable"}), id="503"),
            pytest.param(Scripted(504, "upstream timed out", content_type="text/plain"), id="504"),
            pytest.param(Scripted(301, "", headers={"Location": "https://x.test/"}), id="301"),
            pytest.param(Scripted(200, "<html>ok</html>", content_type="text/html"), id="non-JSON"),
            pytest.param(Scripted(200, {"email": "a@example.com"}), id="200 without id"),
            pytest.param(Scripted(200, [{"id": "x"}]), id="200 with a list"),
            pytest.param(Scripted(200, {"id": "not-a-uuid", "email": "a@x.io"}), id="bad id"),
            pytest.param(Scripted(200, {"id": 42, "email": "a@example.com"}), id="numeric id"),
        ],
    )
    async def test_unusable_answers(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase, answer: Scripted
    ) -> None:
        supabase_fake.script(USER_PATH, answer)
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        assert_unavailable(await supabase_client.get(EXCHANGE, headers=bearer(token)))
        assert len(supabase_fake.user_calls) == 1

    async def test_rate_limited_passes_retry_after_on(
        self, supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
    ) -> None:
        supabase_fake.script(
            USER_PATH,
            Scripted(
                429,
                {"code": 429, "error_code": "over_request_rate_limit", "msg": "Rate limit"},
                headers={"Retry-After": "12"},
            ),
        )
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        response = await supabase_client.get(EXCHANGE, headers=bearer(token))
        assert_unavailable(response, retry_after="12")

    async def test_stall_answers_503_within_the_timeout(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
    ) -> None:
        supabase_fake.script(USER_PATH, Scripted.stall(10))
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        async with (
            supabase_app_factory(SUPABASE_CONNECT_TIMEOUT=0.3, SUPABASE_READ_TIMEOUT=0.3) as app,
            asgi_client(app) as client,
        ):
            started = time.perf_counter()
            response = await client.get(EXCHANGE, headers=bearer(token))
            elapsed = time.perf_counter() - started
        assert_unavailable(response)
        assert 0.25 < elapsed < 1.0
        assert len(supabase_fake.user_calls) == 1

    async def test_connection_refused(self, supabase_app_factory: SupabaseAppFactory) -> None:
        with FakeSupabase() as stopped:
            token = stopped.sign_in(stopped.create_user("a@example.com"))
            url = stopped.url
        async with supabase_app_factory(SUPABASE_URL=url) as app, asgi_client(app) as client:
            response = await client.get(EXCHANGE, headers=bearer(token))
        assert_unavailable(response)

    async def test_server_stopped_after_a_first_answer(
        self, supabase_app_factory: SupabaseAppFactory
    ) -> None:
        """A pooled keep-alive connection to a server that went away is no better."""
        with FakeSupabase() as fake:
            token = fake.sign_in(fake.create_user("a@example.com"))
            async with (
                supabase_app_factory(
                    SUPABASE_URL=fake.url, SUPABASE_SERVICE_ROLE_KEY=fake.service_role_key
                ) as app,
                asgi_client(app) as client,
            ):
                assert (await client.get(EXCHANGE, headers=bearer(token))).status_code == 200
                fake.stop()
                assert_unavailable(await client.get(EXCHANGE, headers=bearer(token)))


class TestNotConfigured:
    async def test_no_supabase_url(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"))
        async with supabase_app_factory(SUPABASE_URL=None) as app, asgi_client(app) as client:
            response = await client.get(EXCHANGE, headers=bearer(token))
        assert response.status_code == 503
        assert response.json() == {"detail": "Supabase is not configured: set SUPABASE_URL"}
        assert supabase_fake.calls == []

    async def test_no_supabase_url_even_with_a_jwt_secret(
        self, supabase_app_factory: SupabaseAppFactory, supabase_fake: FakeSupabase
    ) -> None:
        token = supabase_fake.sign_in(supabase_fake.create_user("a@example.com"), algorithm="HS256")
        async with (
            supabase_app_factory(
                SUPABASE_URL=None, SUPABASE_JWT_SECRET=supabase_fake.jwt_secret
            ) as app,
            asgi_client(app) as client,
        ):
            response = await client.get(EXCHANGE, headers=bearer(token))
        assert response.status_code == 503
        assert supabase_fake.calls == []

    @pytest.mark.parametrize("url", ["abcd.supabase.co", "ftp://abcd.supabase.co", "https://"])
    def test_an_invalid_supabase_url_is_refused_at_startup(self, url: str) -> None:
        with pytest.raises(ValueError, match="SUPABASE_URL"):
            make_settings("sqlite+aiosqlite://", SUPABASE_URL=url)

    def test_a_key_that_cannot_be_a_header_is_refused_at_startup(self) -> None:
        with pytest.raises(ValueError, match="SUPABASE_SERVICE_ROLE_KEY"):
            make_settings("sqlite+aiosqlite://", SUPABASE_SERVICE_ROLE_KEY="bad key\n")


MALFORMED_HEADERS: list[tuple[str, dict[str, str | bytes]]] = [
    ("no header at all", {}),
    ("Bearer without a token", {"Authorization": "Bearer"}),
    ("empty Authorization", {"Authorization": ""}),
    ("Basic scheme", {"Authorization": "Basic dXNlcjpwYXNz"}),
    ("Bearer not a JWT", {"Authorization": "Bearer not-a-jwt"}),
    ("Bearer with CR/LF", {"Authorization": "Bearer eyJh.eyJz\r\nX-Injected: 1.sig"}),
    ("alg none (no signature)", {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}),
    ("header not JSON", {"Authorization": "Bearer bm90LWpzb24.eyJzdWIiOiJ4In0.c2ln"}),
    ("alg not a string", {"Authorization": "Bearer eyJhbGciOlsieCJdfQ.eyJzdWIiOiJ4In0.c2ln"}),
    ("no alg", {"Authorization": "Bearer eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4In0.c2ln"}),
    ("kid not a string", {"Authorization": "Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6WzFdfQ.e30.c2ln"}),
    ("empty storage header", {STORAGE_KEY: ""}),
    ("base64 garbage", {STORAGE_KEY: "base64-!!!"}),
    ("base64 of non-JSON", {STORAGE_KEY: "base64-bm90IGpzb24"}),
    ("JSON without access_token", {STORAGE_KEY: json.dumps({"refresh_token": "r"})}),
    ("base64 JSON without access_token", {STORAGE_KEY: base64url_json({"user": {}})}),
    ("null", {STORAGE_KEY: "null"}),
    ("{}", {STORAGE_KEY: "{}"}),
    ("[]", {STORAGE_KEY: "[]"}),
    ("[null]", {STORAGE_KEY: "[null]"}),
    ("deeply nested JSON", {STORAGE_KEY: "[" * 3000 + "]" * 3000}),
    ("non-JWT string", {STORAGE_KEY: "hello world"}),
    ("CR/LF in the token", {STORAGE_KEY: "eyJh.eyJz\r\nX-Injected: 1.sig"}),
    ("non-ASCII token", {STORAGE_KEY: "eyJh.eyJz\xe9.sig".encode("latin-1")}),
    ("only the PKCE verifier", {f"{STORAGE_KEY}-code-verifier": "verifier-value"}),
    ("only the user key", {f"{STORAGE_KEY}-user": json.dumps({"user": {"id": "x"}})}),
    ("bad percent-encoding", {STORAGE_KEY: "%7B%22access_token%22%3A%FF%7D"}),
]


@pytest.mark.parametrize(
    "headers", [headers for _, headers in MALFORMED_HEADERS], ids=[i for i, _ in MALFORMED_HEADERS]
)
async def test_malformed_headers_answer_401_without_asking_supabase(
    supabase_client: httpx.AsyncClient,
    supabase_fake: FakeSupabase,
    headers: dict[str, str | bytes],
) -> None:
    raw = [
        (name.encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
        for name, value in headers.items()
    ]
    response = await supabase_client.get(EXCHANGE, headers=raw)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert supabase_fake.calls == []


async def test_the_error_detail_never_echoes_the_header(
    supabase_client: httpx.AsyncClient, supabase_fake: FakeSupabase
) -> None:
    value = json.dumps({"refresh_token": "very-secret-refresh-token"})
    response = await supabase_client.get(EXCHANGE, headers={STORAGE_KEY: value})
    assert response.status_code == 401
    assert "very-secret-refresh-token" not in response.text


async def test_logs_never_contain_tokens(
    supabase_client: httpx.AsyncClient,
    supabase_fake: FakeSupabase,
    app_log: pytest.LogCaptureFixture,
) -> None:
    app_log.set_level(logging.DEBUG, logger="app")
    user = supabase_fake.create_user("a@example.com")
    token = supabase_fake.sign_in(user)
    session = supabase_fake.session(token)
    revoked = supabase_fake.sign_in(user)
    supabase_fake.sign_out(revoked)
    await supabase_client.get(EXCHANGE, headers={STORAGE_KEY: base64url_json(session)})
    await supabase_client.get(EXCHANGE, headers=bearer(revoked))
    supabase_fake.script(USER_PATH, Scripted(401, {"message": "Invalid API key"}))
    await supabase_client.get(EXCHANGE, headers=bearer(token))
    logged = "\n".join(record.getMessage() for record in app_log.records)
    assert logged  # something was logged
    for secret in (token, revoked, session["refresh_token"], supabase_fake.service_role_key):
        assert secret not in logged


async def test_openapi_documents_the_exchange(supabase_client: httpx.AsyncClient) -> None:
    schema = (await supabase_client.get("/openapi.json")).json()
    operation = schema["paths"][EXCHANGE]["get"]
    assert {"200", "401", "403", "409", "503"} <= operation["responses"].keys()
    assert {"SupabaseAccessToken": []} in operation["security"]
