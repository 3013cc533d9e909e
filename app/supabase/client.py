"""`SupabaseAuth`: verifies Supabase access tokens for the app, through one shared HTTP client.

One instance per app, made in the lifespan (`app.state.supabase`) and closed at shutdown; routes
get it with `SupabaseAuthDep` (app/dependencies.py). Verification modes (docs/supabase.md):
- default: ask Supabase (`GET /auth/v1/user`) every time: authoritative, sees sign-out,
  deletion and bans, costs a round trip;
- `SUPABASE_JWT_SECRET` set: HS256 tokens are verified locally with it;
- `SUPABASE_VERIFY_MODE=jwks`: ES256/RS256 tokens are verified locally with the project's JWKS.
Whatever local verification cannot decide goes to `/auth/v1/user`.
"""

from __future__ import annotations

import logging

import httpx

from app.config import Settings
from app.errors import SupabaseNotConfigured, SupabaseUnavailable
from app.supabase import remote
from app.supabase.identity import InvalidIdentity, SupabaseIdentity, identity_from_user
from app.supabase.jwks import ASYMMETRIC_ALGORITHMS, JwksCache
from app.supabase.local_verification import unverified_header, verify_claims, verify_hs256
from app.supabase.token_extraction import project_ref

logger = logging.getLogger("app.supabase")


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=settings.SUPABASE_CONNECT_TIMEOUT,
        read=settings.SUPABASE_READ_TIMEOUT,
        write=settings.SUPABASE_READ_TIMEOUT,
        pool=settings.SUPABASE_CONNECT_TIMEOUT,
    )
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, headers={"User-Agent": "megapolis-api"}
    )


class SupabaseAuth:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.project_ref = project_ref(settings.SUPABASE_URL)
        self.auth_url = (settings.SUPABASE_URL or "").rstrip("/") + "/auth/v1"
        # The whole of one call, should Supabase trickle bytes within each phase's timeout.
        self.deadline = settings.SUPABASE_CONNECT_TIMEOUT + settings.SUPABASE_READ_TIMEOUT
        self.jwks = JwksCache(
            http, f"{self.auth_url}/.well-known/jwks.json", deadline=self.deadline
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def ensure_configured(self) -> None:
        if not self.settings.supabase_configured:
            raise SupabaseNotConfigured()

    @property
    def can_fetch_user(self) -> bool:
        """`/auth/v1/user` needs an `apikey`; without one its gateway refuses every call."""
        return self.settings.supabase_api_key is not None

    async def verify(self, token: str) -> SupabaseIdentity:
        """The identity behind a JWT-shaped `token`, locally when configured and possible."""
        self.ensure_configured()
        header = unverified_header(token)
        algorithm = header.get("alg")
        secret = self.settings.SUPABASE_JWT_SECRET
        if algorithm == "HS256" and secret:
            return verify_hs256(token, secret)
        kid = header.get("kid")
        if (
            self.settings.SUPABASE_VERIFY_MODE == "jwks"
            and algorithm in ASYMMETRIC_ALGORITHMS
            and isinstance(kid, str)
        ):
            key = await self.jwks.key(kid)
            if key is not None:
                return verify_claims(token, key, key.algorithm_name)
        return await self.fetch_identity(token)

    async def sign_in_with_password(self, email: str, password: str) -> SupabaseIdentity:
        """The Supabase user these credentials are for (`remote.CredentialsRefused` if none);
        with the publishable key when set, else the service-role key. The session Supabase
        opens is not kept: only who the user is matters here (the admin site's sign-in)."""
        self.ensure_configured()
        return await remote.password_grant(
            self.http,
            self.auth_url,
            email,
            password,
            api_key=self.settings.supabase_api_key,
            deadline=self.deadline,
        )

    async def fetch_identity(self, token: str) -> SupabaseIdentity:
        """Ask `/auth/v1/user`: the current record, with `email_confirmed_at`."""
        self.ensure_configured()
        user = await remote.fetch_user(
            self.http,
            self.auth_url,
            token,
            api_key=self.settings.supabase_api_key,
            deadline=self.deadline,
        )
        try:
            return identity_from_user(user)
        except InvalidIdentity as exc:
            logger.warning("Supabase answered a user we cannot use: %s", exc)
            raise SupabaseUnavailable(retry_after=remote.RETRY_AFTER_SECONDS) from exc
