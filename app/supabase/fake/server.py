"""A fake Supabase Auth server: real HTTP on 127.0.0.1, Supabase's real answers.

For tests (the `supabase_fake` fixture in tests/conftest.py) and for trying sign-in without
a Supabase project (`manage.py dev-supabase`). It only ever binds to the loopback interface.

Point `SUPABASE_URL` at `fake.url` (the storage header is then `sb-127-auth-token`) and the API
talks to it exactly as to Supabase: same paths, headers, status codes and bodies, as GoTrue and
its gateway give them (docs/supabase.md says how to use it).

    with FakeSupabase() as fake:
        user = fake.create_user("ada@example.com")
        token = fake.sign_in(user)                  # an ES256 access token with `kid`
        ...                                         # call the API with the token
        assert fake.user_calls[-1].bearer == token  # what the API sent to Supabase

What it speaks:
- the gateway: every `/auth/v1/...` path but the JWKS needs an `apikey`, one of the project's
  four keys (legacy `anon_key` / `service_role_key`, HS256 JWTs without `sub`; new
  `publishable_key` `sb_publishable_...` / `secret_key` `sb_secret_...`); missing or unknown →
  401 `{"message": ...}`;
- `GET /auth/v1/user`: GoTrue's checks in order (401 `no_authorization`, 403 `bad_jwt` for a bad
  signature or an expired token, 403 `bad_jwt` without `sub`, 400 `bad_jwt` for a non-UUID `sub`,
  403 `user_not_found`, `session_not_found` after sign-out, `user_banned` unless
  `refuses_banned_users` is False, as before GoTrue 2026-07), each error in the body shape the
  request selects; 200 is the user JSON;
- `GET /auth/v1/.well-known/jwks.json`: the published public keys, `Cache-Control: public,
  max-age=600`, no `apikey` needed;
- `GET /auth/v1/admin/users?page=&per_page=` and `GET /auth/v1/admin/users/{id}`: GoTrue's
  admin user list and user, for the service-role or secret key only (app/supabase/fake/admin.py);
- `POST /auth/v1/signup`, `POST /auth/v1/token?grant_type=password|refresh_token`,
  `POST /auth/v1/logout`: sign-up and sign-in as supabase-js calls them (app/supabase/fake/
  sign_in.py), and CORS, so a browser front end can use the fake too;
- outages: `script(path, Scripted(...))` answers any status/body/headers, possibly after a
  delay (`Scripted.stall(seconds)`); `stop()` closes the port (connection refused).

Changes to users (`ban_user`, `confirm_email`, `change_email`, `delete_user`, ...) return the body
of the Database Webhook Supabase would post for that change of `auth.users`.

Every request is recorded in `calls` (method, raw path, headers, body) for assertions.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from app.supabase.fake import admin as admin_endpoints
from app.supabase.fake import sign_in as sign_in_endpoints
from app.supabase.fake.protocol import (
    ADMIN_USERS_PATH,
    BEARER,
    JWKS_PATH,
    LOGOUT_PATH,
    MAX_BODY_BYTES,
    SIGNUP_PATH,
    TOKEN_PATH,
    USER_PATH,
    Answer,
    Json,
    RecordedCall,
    Scripted,
    empty_answer,
    gotrue_error,
    json_answer,
    scripted_answer,
)
from app.supabase.fake.users import FakeUser, obfuscated, utc_now, webhook_payload

LOOPBACK = "127.0.0.1"
# The Supabase CLI's default legacy JWT secret.
DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
ACCESS_TOKEN_SECONDS = 3600
FOREVER = timedelta(days=100 * 365)
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": (
        "authorization, apikey, content-type, x-client-info, x-supabase-api-version"
    ),
    "Access-Control-Max-Age": "600",
}
STABLE_ID_NAMESPACE = uuid.UUID("5b0e9b7e-3f0c-4a52-9a51-6d2a5b1f0c11")


@dataclass(frozen=True)
class _SigningKey:
    algorithm: str
    private_key: Any

    def public_jwk(self, kid: str) -> Json:
        codec = ECAlgorithm if self.algorithm == "ES256" else RSAAlgorithm
        jwk: Json = codec.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=kid, alg=self.algorithm, use="sig", key_ops=["verify"])
        return jwk


class FakeSupabase:
    def __init__(
        self,
        *,
        jwt_secret: str = DEFAULT_JWT_SECRET,
        publishable_key: str | None = None,
        secret_key: str | None = None,
        stable_ids: bool = False,
    ) -> None:
        """`stable_ids`: a user's id derives from its email, so a restarted fake gives the same
        person the same Supabase id (what `manage.py dev-supabase` wants); tests leave it off
        to make several Supabase users with one email."""
        self.jwt_secret = jwt_secret
        self.anon_key = self._legacy_api_key("anon")
        self.service_role_key = self._legacy_api_key("service_role")
        self.publishable_key = publishable_key or f"sb_publishable_{secrets.token_urlsafe(22)}"
        self.secret_key = secret_key or f"sb_secret_{secrets.token_urlsafe(22)}"
        self.stable_ids = stable_ids
        self._first_key = _SigningKey("ES256", ec.generate_private_key(ec.SECP256R1()))
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeSupabase:
        """Listen on 127.0.0.1 (never another interface) at `port` (0: any free port)."""
        fake = self

        class Handler(_Handler):
            supabase = fake

        server = _Server((LOOPBACK, port), Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and every open connection: from now on, connections are refused."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._wake.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSupabase:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget users, sessions, calls and scripts; back to the first signing key only."""
        self._wake.set()
        self._wake = threading.Event()
        with self._lock:
            self.calls: list[RecordedCall] = []
            self.users: dict[str, FakeUser] = {}
            self.sessions: dict[str, str] = {}  # session id → user id
            self.refresh_tokens: dict[str, str] = {}  # refresh token → session id
        self.scripts: dict[str, Scripted] = {}
        self.signing_keys: dict[str, _SigningKey] = {"k1": self._first_key}
        self.published_kids: list[str] = ["k1"]
        self.current_kid = "k1"
        self.refuses_banned_users = True
        self.autoconfirm = True

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    @property
    def api_keys(self) -> tuple[str, str, str, str]:
        """The project's keys; any of them passes the gateway."""
        return (self.anon_key, self.service_role_key, self.publishable_key, self.secret_key)

    # --- users and tokens ------------------------------------------------------------------

    def create_user(
        self,
        email: str = "",
        *,
        email_confirmed: bool = True,
        phone: str = "",
        phone_confirmed: bool = False,
        anonymous: bool = False,
        user_metadata: Json | None = None,
        password: str | None = None,
    ) -> FakeUser:
        """A user as Supabase stores it. The email is kept as given (GoTrue lower-cases it), so
        tests can check that the API does."""
        provider = "anonymous" if anonymous else ("email" if email else "phone")
        now = utc_now()
        user = FakeUser(
            id=self._new_user_id(email),
            email=email,
            email_confirmed_at=now if email and email_confirmed else None,
            phone=phone,
            phone_confirmed_at=now if phone and phone_confirmed else None,
            is_anonymous=anonymous,
            user_metadata={"email": email, "email_verified": False, **(user_metadata or {})},
            app_metadata={"provider": provider, "providers": [provider]},
            password=password,
        )
        with self._lock:
            if user.id in self.users:
                raise ValueError(f"a user with the email {email!r} exists already")
            self.users[user.id] = user
        return user

    def find_user(self, email: str) -> FakeUser | None:
        """The live user with this email (compared lower-case), if any."""
        wanted = email.lower()
        with self._lock:
            for user in self.users.values():
                if user.email.lower() == wanted and user.deleted_at is None:
                    return user
        return None

    def sign_in(
        self,
        user: FakeUser,
        *,
        algorithm: str = "ES256",
        expires_in: int = ACCESS_TOKEN_SECONDS,
        issued_at: datetime | None = None,
        kid: str | None = None,
        claims: Json | None = None,
    ) -> str:
        """An access token for a new session of `user`, as GoTrue mints it. `claims` overrides
        claims (a None value removes the claim)."""
        session_id = self._new_session(user)
        return self.access_token(
            user,
            session_id,
            algorithm=algorithm,
            expires_in=expires_in,
            issued_at=issued_at,
            kid=kid,
            claims=claims,
        )

    def access_token(
        self,
        user: FakeUser,
        session_id: str,
        *,
        algorithm: str = "ES256",
        expires_in: int = ACCESS_TOKEN_SECONDS,
        issued_at: datetime | None = None,
        kid: str | None = None,
        claims: Json | None = None,
    ) -> str:
        now = issued_at or datetime.now(timezone.utc)
        payload: Json = {
            "iss": f"{self.url}/auth/v1",
            "aud": "authenticated",
            "sub": user.id,
            "exp": int((now + timedelta(seconds=expires_in)).timestamp()),
            "iat": int(now.timestamp()),
            "email": user.email,
            "phone": user.phone,
            "app_metadata": user.app_metadata,
            "user_metadata": user.user_metadata,
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": int(now.timestamp())}],
            "session_id": session_id,
            "is_anonymous": user.is_anonymous,
        }
        for name, value in (claims or {}).items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        return self.mint(payload, algorithm=algorithm, kid=kid)

    def mint(
        self,
        payload: Json,
        *,
        algorithm: str = "ES256",
        kid: str | None = None,
        secret: str | None = None,
        headers: Json | None = None,
    ) -> str:
        """Sign any payload: HS256 with the JWT secret (or `secret`), else with the signing key
        `kid` (default: the current one), whose id goes in the header."""
        if algorithm == "HS256":
            key: Any = (secret or self.jwt_secret).encode()
            header = dict(headers or {})
        else:
            kid = kid or self.current_kid
            signing_key = self.signing_keys[kid]
            assert signing_key.algorithm == algorithm, f"key {kid} is {signing_key.algorithm}"
            key = signing_key.private_key
            header = {"kid": kid, **(headers or {})}
        return jwt.encode(payload, key, algorithm=algorithm, headers=header)

    def session(self, token: str) -> Json:
        """The session supabase-js stores under `sb-<ref>-auth-token` for this access token."""
        claims = jwt.decode(token, options={"verify_signature": False})
        user = self.users.get(claims.get("sub", ""))
        refresh_token = secrets.token_urlsafe(12)
        session_id = claims.get("session_id")
        if isinstance(session_id, str) and session_id in self.sessions:
            with self._lock:
                self.refresh_tokens[refresh_token] = session_id
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "expires_at": claims.get("exp"),
            "refresh_token": refresh_token,
            "user": user.to_json() if user else None,
        }

    def new_session(self, user: FakeUser) -> Json:
        """Sign `user` in as `POST /auth/v1/token` does: the session JSON, refresh token
        included."""
        user.last_sign_in_at = utc_now()
        return self.session(self.sign_in(user))

    def sign_out(self, token: str, scope: str = "local") -> None:
        """Revoke the token's session, as `POST /auth/v1/logout` does (`scope="global"`: every
        session of its user; `"others"`: all but this one)."""
        claims = jwt.decode(token, options={"verify_signature": False})
        self.end_sessions(str(claims.get("session_id", "")), scope)

    def end_sessions(self, session_id: str, scope: str = "local") -> None:
        with self._lock:
            user_id = self.sessions.get(session_id)
            ended = {
                sid
                for sid, uid in self.sessions.items()
                if (sid == session_id if scope == "local" else uid == user_id)
                and not (scope == "others" and sid == session_id)
            }
            self._end_sessions(ended)

    def refresh(self, refresh_token: str) -> Json | None:
        """`grant_type=refresh_token`: a new access token for the same session, and a new
        refresh token (the old one is used up); None if the refresh token is unknown."""
        with self._lock:
            session_id = self.refresh_tokens.pop(refresh_token, None)
            user_id = self.sessions.get(session_id or "")
            user = self.users.get(user_id or "")
        if session_id is None or user is None:
            return None
        return self.session(self.access_token(user, session_id))

    # --- changes to users, each returning the Database Webhook body for it -------------------

    def insert_event(self, user: FakeUser) -> Json:
        """The webhook body for the INSERT that created `user`."""
        return webhook_payload("INSERT", record=user.to_row(), old_record=None)

    def confirm_email(self, user: FakeUser) -> Json:
        """The user follows the confirmation link (of a new address, if one is pending)."""

        def confirm() -> None:
            if user.email_change:
                user.email, user.email_change = user.email_change, ""
                user.email_change_sent_at = None
            user.email_confirmed_at = utc_now()

        return self._update(user, confirm)

    def change_email(self, user: FakeUser, new_email: str, *, confirm: bool = True) -> Json:
        """The user asks for a new address (`PUT /auth/v1/user`); with `confirm`, it is
        confirmed at once (the webhook body is then the confirming UPDATE)."""

        def request_change() -> None:
            user.email_change = new_email
            user.email_change_sent_at = utc_now()

        requested = self._update(user, request_change)
        return self.confirm_email(user) if confirm else requested

    def ban_user(self, user: FakeUser, *, until: datetime | None = None) -> Json:
        """`banned_until` = `until` (default: a hundred years from now, the dashboard's "ban");
        a past `until` is a ban that has ended."""

        def ban() -> None:
            user.banned_until = until or utc_now() + FOREVER

        return self._update(user, ban)

    def unban_user(self, user: FakeUser) -> Json:
        def unban() -> None:
            user.banned_until = None

        return self._update(user, unban)

    def update_metadata(self, user: FakeUser, **metadata: Any) -> Json:
        def update() -> None:
            user.user_metadata = {**user.user_metadata, **metadata}

        return self._update(user, update)

    def delete_user(self, user: FakeUser) -> Json:
        """`auth.admin.deleteUser(id)`: the row is gone, its sessions with it."""
        old = user.to_row()
        with self._lock:
            self.users.pop(user.id, None)
            self._end_sessions({sid for sid, uid in self.sessions.items() if uid == user.id})
        return webhook_payload("DELETE", record=None, old_record=old)

    def soft_delete_user(self, user: FakeUser) -> Json:
        """`auth.admin.deleteUser(id, shouldSoftDelete=true)`: the row stays with `deleted_at`
        set and the email and phone overwritten by hashes; the user is gone for `/user`."""

        def soft_delete() -> None:
            user.deleted_at = utc_now()
            if user.email:
                user.email = obfuscated(user.id, user.email)
            if user.phone:
                user.phone = obfuscated(user.id, user.phone)
            with self._lock:
                self._end_sessions({sid for sid, uid in self.sessions.items() if uid == user.id})

        return self._update(user, soft_delete)

    def rotate_signing_key(
        self, kid: str = "k2", *, algorithm: str = "ES256", publish: bool = True
    ) -> str:
        """A new key signs from now on; both are published (the old one as "previously used").
        `publish=False`: a standby key, known to Supabase but neither published nor signing."""
        if algorithm == "ES256":
            private_key: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_keys[kid] = _SigningKey(algorithm, private_key)
        if publish:
            self.published_kids.append(kid)
            self.current_kid = kid
        return kid

    # --- scripting and assertions ----------------------------------------------------------

    def script(self, path: str, answer: Scripted | None) -> None:
        """Answer `path` with `answer` until reset() (None: back to Supabase's own answers)."""
        if answer is None:
            self.scripts.pop(path, None)
        else:
            self.scripts[path] = answer

    def calls_to(self, path: str) -> list[RecordedCall]:
        with self._lock:
            return [call for call in self.calls if urlsplit(call.path).path == path]

    @property
    def user_calls(self) -> list[RecordedCall]:
        return self.calls_to(USER_PATH)

    @property
    def jwks_calls(self) -> list[RecordedCall]:
        return self.calls_to(JWKS_PATH)

    @property
    def admin_calls(self) -> list[RecordedCall]:
        """Calls to the admin user list and to single admin users."""
        with self._lock:
            return [
                call for call in self.calls if urlsplit(call.path).path.startswith(ADMIN_USERS_PATH)
            ]

    # --- the server side -------------------------------------------------------------------

    def _legacy_api_key(self, role: str) -> str:
        now = int(datetime.now(timezone.utc).timestamp())
        payload = {"iss": "supabase", "role": role, "iat": now, "exp": now + 10 * 365 * 86400}
        return jwt.encode(payload, self.jwt_secret.encode(), algorithm="HS256")

    def _new_user_id(self, email: str) -> str:
        if self.stable_ids and email:
            return str(uuid.uuid5(STABLE_ID_NAMESPACE, email.lower()))
        return str(uuid.uuid4())

    def _new_session(self, user: FakeUser) -> str:
        session_id = str(uuid.uuid4())
        with self._lock:
            self.sessions[session_id] = user.id
        return session_id

    def _end_sessions(self, session_ids: set[str]) -> None:
        """Under the lock."""
        for session_id in session_ids:
            self.sessions.pop(session_id, None)
        for token, session_id in list(self.refresh_tokens.items()):
            if session_id in session_ids:
                del self.refresh_tokens[token]

    def _update(self, user: FakeUser, change: Callable[[], None]) -> Json:
        old = user.to_row()
        change()
        user.updated_at = utc_now()
        return webhook_payload("UPDATE", record=user.to_row(), old_record=old)

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def _answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Answer | None:
        with self._lock:
            self.calls.append(RecordedCall(method, target, headers, body))
        path = urlsplit(target).path
        scripted = self.scripts.get(path)
        wake = self._wake
        if scripted is not None and scripted.delay and wake.wait(scripted.delay):
            return None  # reset() or stop() while stalling: hang up
        if scripted is not None and scripted.status is not None:
            return scripted_answer(scripted, headers)
        if method == "OPTIONS":
            return empty_answer(200)  # CORS preflight; the headers are added to every answer
        if path == JWKS_PATH and method == "GET":
            keys = [self.signing_keys[kid].public_jwk(kid) for kid in self.published_kids]
            return json_answer(200, {"keys": keys}, {"Cache-Control": "public, max-age=600"})
        refused = self._gateway_refusal(headers)
        if refused is not None:
            return refused
        if path == USER_PATH and method == "GET":
            return self._get_user(headers)
        if path == SIGNUP_PATH and method == "POST":
            return sign_in_endpoints.signup(self, headers, body)
        if path == TOKEN_PATH and method == "POST":
            return sign_in_endpoints.token(self, target, headers, body)
        if path == LOGOUT_PATH and method == "POST":
            return sign_in_endpoints.logout(self, target, headers)
        if (
            path == ADMIN_USERS_PATH or path.startswith(f"{ADMIN_USERS_PATH}/")
        ) and method == "GET":
            return admin_endpoints.users(self, target, headers)
        return json_answer(404, {"message": "no Route matched with those values"})

    def _gateway_refusal(self, headers: dict[str, str]) -> Answer | None:
        """The gateway (Kong / the hosted API gateway) checks the apikey before GoTrue sees
        anything: any of the project's four keys, as is."""
        apikey = headers.get("apikey")
        if apikey is None:
            return json_answer(401, {"message": "No API key found in request"})
        if apikey not in self.api_keys:
            hint = "Double check your Supabase `anon` or `service_role` API key."
            return json_answer(401, {"message": "Invalid API key", "hint": hint})
        return None

    def authenticated_user(self, headers: dict[str, str]) -> tuple[FakeUser, str] | Answer:
        """GoTrue's `requireAuthentication`, in its order: the user and session id behind the
        request's bearer token, or the error GoTrue answers."""
        match = BEARER.fullmatch(headers.get("authorization", ""))
        if match is None:
            return gotrue_error(
                headers, 401, "no_authorization", "This endpoint requires a valid Bearer token"
            )
        try:
            claims = self.verified_claims(match[1])
        except jwt.ExpiredSignatureError:
            return gotrue_error(
                headers,
                403,
                "bad_jwt",
                "invalid JWT: unable to parse or verify signature, "
                "token has invalid claims: token is expired",
            )
        except jwt.PyJWTError:
            return gotrue_error(
                headers,
                403,
                "bad_jwt",
                "invalid JWT: unable to parse or verify signature, "
                "token signature is invalid: signature is invalid",
            )
        subject = claims.get("sub")
        if not subject:
            return gotrue_error(headers, 403, "bad_jwt", "invalid claim: missing sub claim")
        try:
            uuid.UUID(str(subject))
        except ValueError:
            return gotrue_error(headers, 400, "bad_jwt", "invalid claim: sub claim must be a UUID")
        user = self.users.get(str(subject))
        if user is None or user.deleted_at is not None:
            return gotrue_error(
                headers, 403, "user_not_found", "User from sub claim in JWT does not exist"
            )
        session_id = claims.get("session_id")
        if session_id and session_id not in self.sessions:
            return gotrue_error(
                headers,
                403,
                "session_not_found",
                "Session from session_id claim in JWT does not exist",
            )
        if user.banned and self.refuses_banned_users:
            return gotrue_error(headers, 403, "user_banned", "User is banned")
        return user, str(session_id or "")

    def _get_user(self, headers: dict[str, str]) -> Answer:
        found = self.authenticated_user(headers)
        if isinstance(found, Answer):
            return found
        user, _ = found
        return json_answer(200, user.to_json())

    def verified_claims(self, token: str) -> Json:
        """As GoTrue's parseJWTClaims: the key by `kid`, the secret for HS256, no audience or
        issuer check, no leeway, `iat` not checked."""
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        key: Any
        if algorithm == "HS256":
            key = self.jwt_secret.encode()
        else:
            signing_key = self.signing_keys.get(str(header.get("kid")))
            if signing_key is None or signing_key.algorithm != algorithm:
                raise jwt.InvalidAlgorithmError(f"signing method {algorithm} is invalid")
            key = signing_key.private_key.public_key()
        claims: Json = jwt.decode(
            token,
            key,
            algorithms=[str(algorithm)],
            options={"verify_aud": False, "verify_iat": False, "verify_iss": False},
        )
        return claims


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog (5) drops bursts of concurrent connections


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    supabase: FakeSupabase

    def setup(self) -> None:
        super().setup()
        self.supabase._track(self.connection, add=True)

    def finish(self) -> None:
        self.supabase._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._respond()

    def do_POST(self) -> None:
        self._respond()

    def do_OPTIONS(self) -> None:
        self._respond()

    def _respond(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.supabase._answer(self.command, self.path, headers, body)
        if answer is None:
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            extra = CORS_HEADERS if "origin" in headers else {}
            for name, value in {**answer.headers, **extra}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:
            self.close_connection = True  # the client gave up (timed out) meanwhile

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet
