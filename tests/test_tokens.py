"""The API's own tokens: what they carry, and every kind of bad token answering 401."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from app.security import issue_token
from tests.conftest import TEST_SECRET, AuthHeaders, UserFactory, one_database

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def claims_for(user_id: int, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "email": "x@example.com",
        "iat": now,
        "exp": now + timedelta(hours=1),
        "stamp": "test-stamp",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    payload = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


async def test_issued_token_carries_the_contract_claims(
    app: FastAPI, make_user: UserFactory
) -> None:
    user = await make_user("claims@example.com")
    issued = issue_token(app.state.settings, user)
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(issued.token, TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user.id)
    assert claims["email"] == "claims@example.com"
    assert claims["exp"] - claims["iat"] == 43200 * 60
    assert datetime.fromtimestamp(claims["exp"], timezone.utc) == issued.expires_at


async def test_valid_token_is_accepted(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    assert (await client.get("/auth/me", headers=auth(user))).status_code == 200


def _bad_tokens(user_id: int) -> dict[str, str]:
    now = datetime.now(timezone.utc)
    good = jwt.encode(claims_for(user_id), TEST_SECRET, algorithm="HS256")
    head, payload, signature = good.split(".")
    tampered_payload = b64({**jwt.decode(good, options={"verify_signature": False}), "sub": "1"})
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "expired": jwt.encode(
            claims_for(user_id, iat=now - timedelta(days=2), exp=now - timedelta(days=1)),
            TEST_SECRET,
            algorithm="HS256",
        ),
        "tampered": f"{head}.{tampered_payload}.{signature}",
        "bad-signature": f"{head}.{payload}.{signature[:-4]}AAAA",
        "alg-none": unsigned_token(claims_for(user_id)),
        "rs256": jwt.encode(claims_for(user_id), rsa_key, algorithm="RS256"),
        "es256": jwt.encode(claims_for(user_id), ec_key, algorithm="ES256"),
        "hs512-same-secret": jwt.encode(claims_for(user_id), TEST_SECRET, algorithm="HS512"),
        "wrong-secret": jwt.encode(claims_for(user_id), "another-secret-" * 4, algorithm="HS256"),
        "no-exp": jwt.encode(claims_for(user_id, exp=None), TEST_SECRET, algorithm="HS256"),
        "no-sub": jwt.encode(claims_for(user_id, sub=None), TEST_SECRET, algorithm="HS256"),
        "int-sub": jwt.encode(claims_for(user_id, sub=user_id), TEST_SECRET, algorithm="HS256"),
        "text-sub": jwt.encode(claims_for(user_id, sub="admin"), TEST_SECRET, algorithm="HS256"),
        "huge-sub": jwt.encode(claims_for(user_id, sub="9" * 30), TEST_SECRET, algorithm="HS256"),
        "garbage": "not-a-token",
        "two-parts": f"{head}.{payload}",
        "empty-segments": "..",
    }


BAD_KINDS = list(_bad_tokens(1))


@pytest.mark.parametrize("kind", BAD_KINDS)
async def test_bad_token_is_401_with_challenge(
    client: httpx.AsyncClient, make_user: UserFactory, kind: str
) -> None:
    user = await make_user()
    token = _bad_tokens(user.id)[kind]
    for path in ("/auth/me", "/api/v1/users/me"):
        response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (kind, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["detail"] in ("Invalid token", "Token has expired")


async def test_expired_token_says_so(client: httpx.AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    response = await client.get(
        "/auth/me", headers={"Authorization": f"Bearer {_bad_tokens(user.id)['expired']}"}
    )
    assert response.json() == {"detail": "Token has expired"}
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "bearer"],
)
@one_database
async def test_missing_or_malformed_authorization_is_401(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.get("/auth/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_scheme_is_case_insensitive(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user()
    token = auth(user)["Authorization"].split()[1]
    response = await client.get("/auth/me", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


async def test_token_of_deleted_user_is_refused(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    admin = await make_user(is_superuser=True)
    user = await make_user()
    headers = auth(user)
    assert (await client.delete(f"/api/v1/users/{user.id}", headers=auth(admin))).status_code == 204
    response = await client.get("/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "User not found or inactive"}


async def test_token_of_deactivated_user_is_refused(
    client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders
) -> None:
    user = await make_user(is_active=False)
    response = await client.get("/api/v1/users/me", headers=auth(user))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
