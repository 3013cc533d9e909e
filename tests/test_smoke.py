import httpx

from tests.conftest import AuthHeaders, UserFactory


async def test_me_roundtrip(client: httpx.AsyncClient, make_user: UserFactory, auth: AuthHeaders) -> None:
    user = await make_user("Someone@Example.com".lower())
    response = await client.get("/auth/me", headers=auth(user))
    assert response.status_code == 200
    assert response.json() == {"user": {"id": user.id, "email": "someone@example.com"}}
