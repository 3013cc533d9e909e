"""The project's public signing keys, from `{SUPABASE_URL}/auth/v1/.well-known/jwks.json`.

Cached for at most 10 minutes (Supabase's edge caches 10 more; its docs ask not to cache longer,
so a revoked key stops verifying within 20 minutes). A token signed with a key we do not know
triggers one refetch (after a rotation), at most every 30 seconds so random `kid`s cannot make
us hammer Supabase. `None` means "no key to verify with": the caller then asks `/auth/v1/user`.
The cache lives in the process: each worker fetches its own copy, which is fine for a cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx
import jwt

from app.errors import SupabaseUnavailable
from app.supabase import remote

logger = logging.getLogger("app.supabase")

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256"})
CACHE_SECONDS = 600.0
REFETCH_COOLDOWN_SECONDS = 30.0


class JwksCache:
    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = url
        self._deadline = deadline
        self.clock = clock  # monotonic seconds; tests may replace it
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fresh_until = float("-inf")
        self._last_fetch = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The published ES256/RS256 key with this `kid`, if any."""
        now = self.clock()
        if now >= self._fresh_until or kid not in self._keys:
            async with self._lock:
                # Another request may have fetched while this one waited for the lock.
                if self.clock() - self._last_fetch >= REFETCH_COOLDOWN_SECONDS:
                    await self._fetch()
        if self.clock() >= self._fresh_until:
            return None
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._last_fetch = self.clock()
        try:
            response = await remote.get(self._http, self._url, call="jwks", deadline=self._deadline)
        except SupabaseUnavailable:
            return  # logged by remote.get; keys still fresh stay usable
        body = remote.json_body(response)
        if response.status_code != 200 or not isinstance(body, dict):
            logger.warning("Supabase JWKS answered %s", response.status_code)
            return
        self._keys = usable_keys(body.get("keys"))
        self._fresh_until = self._last_fetch + CACHE_SECONDS


def usable_keys(entries: object) -> dict[str, jwt.PyJWK]:
    """ES256/RS256 public keys by `kid`. Others (and malformed entries) are skipped: tokens they
    signed are checked by `/auth/v1/user` instead."""
    keys: dict[str, jwt.PyJWK] = {}
    if not isinstance(entries, list):
        return keys
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        if key.algorithm_name in ASYMMETRIC_ALGORITHMS:
            keys[entry["kid"]] = key
    return keys
