"""A fake Supabase Auth server for tests: real HTTP on 127.0.0.1, Supabase's real answers.

Point `SUPABASE_URL` at `fake.url` (the storage header is then `sb-127-auth-token`) and the API
talks to it exactly as to Supabase: same paths, headers, status codes and bodies, as GoTrue and
its gateway give them (docs/supabase.md says how to use it).

    with FakeSupabase() as fake:
        user = fake.create_user("ada@example.com")
        token = fake.sign_in(user)                  # an ES256 access token with `kid`
        ...                                         # call the API with the token
        assert fake.user_calls[-1].bearer == token  # what the API sent to Supabase

What it speaks:
- `GET /auth/v1/user`: the gateway's `apikey` check (401 `{"message": ...}` when missing or
  unknown), then GoTrue's checks in order (401 `no_authorization`, 403 `bad_jwt` for a bad
  signature or an expired token, 403 `bad_jwt` without `sub`, 400 `bad_jwt` for a non-UUID `sub`,
  403 `user_not_found`, `session_not_found` after sign-out, `user_banned`), each error in the
  body shape the request selects: `{"code": 403, "error_code", "msg"}`, or `{"code", "message"}`
  with `X-Supabase-Api-Version: 2024-01-01`; 200 is the user JSON.
- `GET /auth/v1/.well-known/jwks.json`: the published public keys, `Cache-Control: public,
  max-age=600`, no `apikey` needed.
- Tokens: ES256 (or RS256) signed with a key that has a `kid`, or HS256 with the legacy JWT secret;
  `anon_key` / `service_role_key` are the project's API keys (HS256 JWTs without `sub`).
- Outages: `script(path, Scripted(...))` answers any status/body/headers, possibly after a
  delay (`Scripted.stall(seconds)`); `stop()` closes the port (connection refused).

Every request is recorded in `calls` (method, raw path, headers) for assertions.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

USER_PATH = "/auth/v1/user"
JWKS_PATH = "/auth/v1/.well-known/jwks.json"
API_VERSION = "2024-01-01"
# The Supabase CLI's default legacy JWT secret.
DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
BEARER = re.compile(r"(?i)bearer (\S+)")

Json = dict[str, Any]


def iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeUser:
    """A row of `auth.users`, rendered as GoTrue's `models.User` JSON by `to_json()`."""

    id: str
    email: str = ""
    email_confirmed_at: str | None = None
    phone: str = ""
    phone_confirmed_at: str | None = None
    is_anonymous: bool = False
    user_metadata: Json = field(default_factory=dict)
    app_metadata: Json = field(default_factory=dict)
    banned: bool = False
    created_at: str = field(default_factory=iso_now)

    def to_json(self) -> Json:
        data: Json = {
            "id": self.id,
            "aud": "authenticated",
            "role": "authenticated",
            "email": self.email,
            "phone": self.phone,
            "app_metadata": self.app_metadata,
            "user_metadata": self.user_metadata,
            "identities": [],
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "is_anonymous": self.is_anonymous,
        }
        # omitempty in GoTrue: absent, not null, when unset.
        if self.email_confirmed_at:
            data["email_confirmed_at"] = self.email_confirmed_at
        if self.phone_confirmed_at:
            data["phone_confirmed_at"] = self.phone_confirmed_at
        confirmations = [t for t in (self.email_confirmed_at, self.phone_confirmed_at) if t]
        if confirmations:
            data["confirmed_at"] = min(confirmations)  # LEAST(email_..., phone_confirmed_at)
        if self.banned:
            data["banned_until"] = "2999-01-01T00:00:00Z"
        return data


@dataclass(frozen=True)
class Scripted:
    """A scripted answer for one path, instead of Supabase's own.

    `status=None` answers as Supabase would, after `delay` seconds. With `error_code`, the body is
    a GoTrue error in the shape the request asks for; else `body` as given (a dict or list is sent
    as JSON)."""

    status: int | None = None
    body: bytes | str | Json | list[Any] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error_code: str | None = None
    msg: str = ""

    @classmethod
    def stall(cls, seconds: float = 30.0) -> Scripted:
        """Accept the request and say nothing for `seconds` (reset() and stop() cut it short)."""
        return cls(delay=seconds)

    @classmethod
    def gotrue_error(cls, status: int, error_code: str, msg: str) -> Scripted:
        return cls(status=status, error_code=error_code, msg=msg)


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str
    """The raw request target, e.g. `/auth/v1/user` (a double slash would show here)."""
    headers: dict[str, str]
    """Lower-case names."""

    @property
    def apikey(self) -> str | None:
        return self.headers.get("apikey")

    @property
    def bearer(self) -> str | None:
        match = BEARER.fullmatch(self.headers.get("authorization", ""))
        return match[1] if match else None


@dataclass(frozen=True)
class _SigningKey:
    algorithm: str
    private_key: Any

    def public_jwk(self, kid: str) -> Json:
        codec = ECAlgorithm if self.algorithm == "ES256" else RSAAlgorithm
        jwk: Json = codec.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=kid, alg=self.algorithm, use="sig", key_ops=["verify"])
        return jwk


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str]


class FakeSupabase:
    def __init__(self, *, jwt_secret: str = DEFAULT_JWT_SECRET) -> None:
        self.jwt_secret = jwt_secret
        self.anon_key = self._api_key("anon")
        self.service_role_key = self._api_key("service_role")
        self._first_key = _SigningKey("ES256", ec.generate_private_key(ec.SECP256R1()))
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSupabase:
        fake = self

        class Handler(_Handler):
            supabase = fake

        server = _Server(("127.0.0.1", 0), Handler)
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
        self.scripts: dict[str, Scripted] = {}
        self.signing_keys: dict[str, _SigningKey] = {"k1": self._first_key}
        self.published_kids: list[str] = ["k1"]
        self.current_kid = "k1"

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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
    ) -> FakeUser:
        """A user as Supabase stores it. The email is kept as given (GoTrue lower-cases it), so
        tests can check that the API does."""
        provider = "anonymous" if anonymous else ("email" if email else "phone")
        user = FakeUser(
            id=str(uuid.uuid4()),
            email=email,
            email_confirmed_at=iso_now() if email and email_confirmed else None,
            phone=phone,
            phone_confirmed_at=iso_now() if phone and phone_confirmed else None,
            is_anonymous=anonymous,
            user_metadata={"email": email, "email_verified": False, **(user_metadata or {})},
            app_metadata={"provider": provider, "providers": [provider]},
        )
        self.users[user.id] = user
        return user

    def sign_in(
        self,
        user: FakeUser,
        *,
        algorithm: str = "ES256",
        expires_in: int = 3600,
        issued_at: datetime | None = None,
        kid: str | None = None,
        claims: Json | None = None,
    ) -> str:
        """An access token for a new session of `user`, as GoTrue mints it. `claims` overrides
        claims (a None value removes the claim)."""
        session_id = str(uuid.uuid4())
        self.sessions[session_id] = user.id
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
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": 3600,
            "expires_at": claims.get("exp"),
            "refresh_token": secrets.token_urlsafe(12),
            "user": user.to_json() if user else None,
        }

    def sign_out(self, token: str) -> None:
        """Revoke the token's session, as `POST /auth/v1/logout` does."""
        claims = jwt.decode(token, options={"verify_signature": False})
        self.sessions.pop(claims.get("session_id", ""), None)

    def confirm_email(self, user: FakeUser) -> None:
        """The user follows the confirmation link."""
        user.email_confirmed_at = iso_now()

    def delete_user(self, user: FakeUser) -> None:
        self.users.pop(user.id, None)

    def ban_user(self, user: FakeUser) -> None:
        user.banned = True

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
            return [call for call in self.calls if call.path == path]

    @property
    def user_calls(self) -> list[RecordedCall]:
        return self.calls_to(USER_PATH)

    @property
    def jwks_calls(self) -> list[RecordedCall]:
        return self.calls_to(JWKS_PATH)

    # --- the server side -------------------------------------------------------------------

    def _api_key(self, role: str) -> str:
        now = int(datetime.now(timezone.utc).timestamp())
        payload = {"iss": "supabase", "role": role, "iat": now, "exp": now + 10 * 365 * 86400}
        return jwt.encode(payload, self.jwt_secret.encode(), algorithm="HS256")

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def _answer(self, method: str, path: str, headers: dict[str, str]) -> _Answer | None:
        with self._lock:
            self.calls.append(RecordedCall(method, path, headers))
        scripted = self.scripts.get(path)
        wake = self._wake
        if scripted is not None and scripted.delay and wake.wait(scripted.delay):
            return None  # reset() or stop() while stalling: hang up
        if scripted is not None and scripted.status is not None:
            if scripted.error_code is not None:
                return self._error(headers, scripted.status, scripted.error_code, scripted.msg)
            body = scripted.body
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            raw = body.encode() if isinstance(body, str) else (body or b"")
            return _Answer(
                scripted.status, raw, {"Content-Type": scripted.content_type, **scripted.headers}
            )
        if path == JWKS_PATH and method == "GET":
            keys = [self.signing_keys[kid].public_jwk(kid) for kid in self.published_kids]
            return _json(200, {"keys": keys}, {"Cache-Control": "public, max-age=600"})
        if path == USER_PATH and method == "GET":
            return self._get_user(headers)
        return _json(404, {"message": "no Route matched with those values"})

    def _get_user(self, headers: dict[str, str]) -> _Answer:
        # The gateway (Kong / the hosted API gateway) checks the apikey before GoTrue sees anything.
        apikey = headers.get("apikey")
        if apikey is None:
            return _json(401, {"message": "No API key found in request"})
        if apikey not in (self.anon_key, self.service_role_key):
            hint = "Double check your Supabase `anon` or `service_role` API key."
            return _json(401, {"message": "Invalid API key", "hint": hint})
        # GoTrue's requireAuthentication, in its order.
        match = BEARER.fullmatch(headers.get("authorization", ""))
        if match is None:
            return self._error(
                headers, 401, "no_authorization", "This endpoint requires a valid Bearer token"
            )
        try:
            claims = self._verified_claims(match[1])
        except jwt.ExpiredSignatureError:
            return self._error(
                headers,
                403,
                "bad_jwt",
                "invalid JWT: unable to parse or verify signature, "
                "token has invalid claims: token is expired",
            )
        except jwt.PyJWTError:
            return self._error(
                headers,
                403,
                "bad_jwt",
                "invalid JWT: unable to parse or verify signature, "
                "token signature is invalid: signature is invalid",
            )
        subject = claims.get("sub")
        if not subject:
            return self._error(headers, 403, "bad_jwt", "invalid claim: missing sub claim")
        try:
            uuid.UUID(str(subject))
        except ValueError:
            return self._error(headers, 400, "bad_jwt", "invalid claim: sub claim must be a UUID")
        user = self.users.get(str(subject))
        if user is None:
            return self._error(
                headers, 403, "user_not_found", "User from sub claim in JWT does not exist"
            )
        session_id = claims.get("session_id")
        if session_id and session_id not in self.sessions:
            return self._error(
                headers,
                403,
                "session_not_found",
                "Session from session_id claim in JWT does not exist",
            )
        if user.banned:
            return self._error(headers, 403, "user_banned", "User is banned")
        return _json(200, user.to_json())

    def _verified_claims(self, token: str) -> Json:
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

    def _error(self, headers: dict[str, str], status: int, error_code: str, msg: str) -> _Answer:
        """GoTrue's error body: the 2024-01-01 shape when the request asks for it."""
        extra = {"x-sb-error-code": error_code}
        if headers.get("x-supabase-api-version") == API_VERSION:
            extra["X-Supabase-Api-Version"] = API_VERSION
            return _json(status, {"code": error_code, "message": msg}, extra)
        return _json(status, {"code": status, "error_code": error_code, "msg": msg}, extra)


def _json(status: int, body: Json, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(
        status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


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

    def _respond(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.supabase._answer(self.command, self.path, headers)
        if answer is None:
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:
            self.close_connection = True  # the client gave up (timed out) meanwhile

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet
