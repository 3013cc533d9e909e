"""Unit tests of app.supabase.jwks: cache lifetime, refetch cooldown, failures, junk keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from app.supabase.fake import JWKS_PATH, FakeSupabase, Scripted
from app.supabase.jwks import JwksCache, usable_keys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2) as client:
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(http: httpx.AsyncClient, supabase_fake: FakeSupabase, clock: Clock) -> JwksCache:
    return JwksCache(http, supabase_fake.url + JWKS_PATH, deadline=0.3, clock=clock)


async def test_keys_are_cached_for_ten_minutes(
    cache: JwksCache, supabase_fake: FakeSupabase, clock: Clock
) -> None:
    key = await cache.key("k1")
    assert key is not None and key.algorithm_name == "ES256"
    clock.now += 599
    assert await cache.key("k1") is not None
    assert len(supabase_fake.jwks_calls) == 1
    clock.now += 1
    assert await cache.key("k1") is not None
    assert len(supabase_fake.jwks_calls) == 2


async def test_an_unknown_kid_refetches_after_the_cooldown_only(
    cache: JwksCache, supabase_fake: FakeSupabase, clock: Clock
) -> None:
    assert await cache.key("k2") is None  # first fetch: k1 only
    supabase_fake.rotate_signing_key("k2")
    clock.now += 29
    assert await cache.key("k2") is None
    assert len(supabase_fake.jwks_calls) == 1
    clock.now += 1
    assert await cache.key("k2") is not None
    assert len(supabase_fake.jwks_calls) == 2


async def test_concurrent_cold_lookups_fetch_once(
    cache: JwksCache, supabase_fake: FakeSupabase
) -> None:
    keys = await asyncio.gather(*(cache.key("k1") for _ in range(20)))
    assert all(key is not None for key in keys)
    assert len(supabase_fake.jwks_calls) == 1


async def test_a_failed_refresh_drops_stale_keys_and_waits_before_retrying(
    cache: JwksCache, supabase_fake: FakeSupabase, clock: Clock
) -> None:
    assert await cache.key("k1") is not None
    supabase_fake.script(JWKS_PATH, Scripted(503, "down", content_type="text/plain"))
    clock.now += 600
    assert await cache.key("k1") is None  # stale and not refreshed: ask /auth/v1/user instead
    clock.now += 10
    assert await cache.key("k1") is None
    assert len(supabase_fake.jwks_calls) == 2  # no retry within the cooldown
    supabase_fake.script(JWKS_PATH, None)
    clock.now += 30
    assert await cache.key("k1") is not None


async def test_a_failed_refetch_keeps_fresh_keys(
    cache: JwksCache, supabase_fake: FakeSupabase, clock: Clock
) -> None:
    assert await cache.key("k1") is not None
    supabase_fake.script(JWKS_PATH, Scripted.stall(5))
    clock.now += 31
    assert await cache.key("unknown") is None
    assert await cache.key("k1") is not None


def test_usable_keys_skip_what_cannot_verify_user_tokens(supabase_fake: FakeSupabase) -> None:
    good = supabase_fake.signing_keys["k1"].public_jwk("k1")
    entries = [
        good,
        {**good, "kid": None},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hs", "alg": "HS256"},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA", "alg": "ES256"},
        {"kty": "nope", "kid": "x"},
        "not a key",
    ]
    assert list(usable_keys(entries)) == ["k1"]
    assert usable_keys({"keys": "not a list"}) == {}
    assert usable_keys(None) == {}
