"""Unit tests of app.supabase.token_extraction: every storage format, every malformed value."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote

import jwt
import pytest

from app.supabase.token_extraction import (
    MAX_TOKEN_LENGTH,
    TokenMalformed,
    TokenMissing,
    decode_storage_value,
    extract_token,
    project_ref,
)

TOKEN = jwt.encode({"sub": "11111111-1111-1111-1111-111111111111"}, "s" * 32, algorithm="HS256")
OTHER = jwt.encode({"sub": "22222222-2222-2222-2222-222222222222"}, "s" * 32, algorithm="HS256")
SESSION = {
    "access_token": TOKEN,
    "token_type": "bearer",
    "expires_in": 3600,
    "expires_at": 1_900_000_000,
    "refresh_token": "r3fr3sh",
    "user": {"id": "11111111-1111-1111-1111-111111111111", "email": "a@example.com"},
}
ARRAY = [TOKEN, "r3fr3sh", None, None, None]


def b64url(value: object) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class TestProjectRef:
    @pytest.mark.parametrize(
        ("url", "ref"),
        [
            ("https://abcd.supabase.co", "abcd"),
            ("https://abcd.supabase.co/", "abcd"),
            ("http://127.0.0.1:54321", "127"),
            ("http://localhost:54321", "localhost"),
            ("https://api.example.com", "api"),
            (None, None),
            ("", None),
        ],
    )
    def test_ref_is_the_first_label_of_the_host(self, url: str | None, ref: str | None) -> None:
        assert project_ref(url) == ref


class TestAuthorizationHeader:
    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
    def test_scheme_is_case_insensitive(self, scheme: str) -> None:
        assert extract_token({"Authorization": f"{scheme} {TOKEN}"}) == TOKEN

    def test_surrounding_whitespace_is_ignored(self) -> None:
        assert extract_token({"authorization": f"  Bearer   {TOKEN}  "}) == TOKEN

    @pytest.mark.parametrize("value", ["Bearer", "Bearer ", "bearer    "])
    def test_bearer_without_token_is_missing(self, value: str) -> None:
        with pytest.raises(TokenMissing):
            extract_token({"authorization": value})

    @pytest.mark.parametrize("value", ["", "   ", f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"])
    def test_other_schemes_are_malformed(self, value: str) -> None:
        with pytest.raises(TokenMalformed):
            extract_token({"authorization": value})

    def test_authorization_wins_over_the_storage_header(self) -> None:
        headers = {"authorization": f"Bearer {TOKEN}", "sb-127-auth-token": OTHER}
        assert extract_token(headers, "127") == TOKEN

    def test_a_bad_authorization_is_not_rescued_by_the_storage_header(self) -> None:
        with pytest.raises(TokenMalformed):
            extract_token({"authorization": "Bearer x", "sb-127-auth-token": OTHER}, "127")

    def test_the_bearer_value_is_not_decoded_as_a_session(self) -> None:
        with pytest.raises(TokenMalformed):
            extract_token({"authorization": f"Bearer base64-{b64url(SESSION)}"})


class TestStorageFormats:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(TOKEN, id="raw token"),
            pytest.param(f"  {TOKEN}\t", id="raw token with whitespace"),
            pytest.param(json.dumps(SESSION), id="supabase-js v2 session JSON"),
            pytest.param(json.dumps({"access_token": TOKEN}), id="tokens-only JSON"),
            pytest.param(json.dumps(ARRAY), id="auth-helpers JSON array"),
            pytest.param(json.dumps(TOKEN), id="JSON string"),
            pytest.param(f"base64-{b64url(SESSION)}", id="ssr base64url object"),
            pytest.param(f"base64-{b64url(ARRAY)}", id="ssr base64url array"),
            pytest.param(f"base64-{b64url(SESSION)}==", id="base64url with padding"),
            pytest.param(quote(json.dumps(SESSION), safe=""), id="percent-encoded object"),
            pytest.param(quote(json.dumps(ARRAY), safe=""), id="percent-encoded array"),
            pytest.param(
                re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote(json.dumps(SESSION))),
                id="percent-encoded, lower-case escapes",
            ),
            pytest.param(
                json.dumps({"currentSession": SESSION, "expiresAt": 1}), id="gotrue-js v1"
            ),
        ],
    )
    def test_every_format_gives_the_access_token(self, value: str) -> None:
        assert decode_storage_value(value) == TOKEN
        assert extract_token({"sb-127-auth-token": value}, "127") == TOKEN

    def test_chunks_are_joined_in_order_until_the_first_missing(self) -> None:
        value = f"base64-{b64url(SESSION)}"
        headers = {
            "sb-abcd-auth-token.1": value[40:80],
            "sb-abcd-auth-token.0": value[:40],
            "sb-abcd-auth-token.2": value[80:],
            "sb-abcd-auth-token.4": "ignored: .3 is missing",
        }
        assert extract_token(headers, "abcd") == TOKEN

    def test_the_whole_value_wins_over_chunks(self) -> None:
        headers = {"sb-abcd-auth-token": TOKEN, "sb-abcd-auth-token.0": OTHER}
        assert extract_token(headers, "abcd") == TOKEN

    def test_header_names_are_case_insensitive(self) -> None:
        assert extract_token({"SB-ABCD-Auth-Token": TOKEN}, "abcd") == TOKEN

    def test_the_project_ref_is_preferred(self) -> None:
        headers = {"sb-aaaa-auth-token": OTHER, "sb-mine-auth-token": TOKEN}
        assert extract_token(headers, "mine") == TOKEN

    def test_any_project_is_accepted_when_ours_is_absent(self) -> None:
        assert extract_token({"sb-other-auth-token": TOKEN}, "mine") == TOKEN
        assert extract_token({"sb-other-auth-token": TOKEN}) == TOKEN

    @pytest.mark.parametrize(
        "name",
        [
            "sb-127-auth-token-code-verifier",
            "sb-127-auth-token-flow-abc-code-verifier",
            "sb-127-auth-token-flows-code-verifier",
            "sb-127-auth-token-user",
            "sb-access-token",
            "supabase.auth.token",
        ],
    )
    def test_related_keys_are_not_the_session(self, name: str) -> None:
        with pytest.raises(TokenMissing):
            extract_token({name: TOKEN}, "127")

    def test_no_header_is_missing(self) -> None:
        with pytest.raises(TokenMissing):
            extract_token({"accept": "application/json"}, "127")


class TestMalformedValues:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("base64-!!!", id="bad base64"),
            pytest.param("base64-a", id="impossible base64 length"),
            pytest.param("base64-" + base64.urlsafe_b64encode(b"not json").decode(), id="b64 text"),
            pytest.param("base64-" + base64.urlsafe_b64encode(b"\xff\xfe").decode(), id="not utf8"),
            pytest.param("base64-", id="empty base64"),
            pytest.param(json.dumps({"refresh_token": "r"}), id="no access_token"),
            pytest.param("null", id="null"),
            pytest.param("{}", id="empty object"),
            pytest.param("[]", id="empty array"),
            pytest.param("[null]", id="array of null"),
            pytest.param('{"access_token": 42}', id="non-string token"),
            pytest.param('{"access_token": ""}', id="empty token"),
            pytest.param('{"currentSession": {}}', id="empty current session"),
            pytest.param("{not json", id="broken JSON"),
            pytest.param("[" * 5000 + "]" * 5000, id="deeply nested JSON"),
            pytest.param("%7B%FF%FE", id="percent-encoded non-UTF-8"),
            pytest.param("not-a-jwt", id="not a JWT"),
            pytest.param("a.b", id="two segments"),
            pytest.param("a.b.c.d", id="four segments"),
            pytest.param("a..c", id="empty segment"),
            pytest.param(TOKEN + ".", id="trailing dot"),
            pytest.param(TOKEN[:-3] + "+/=", id="base64 not base64url"),
            pytest.param(TOKEN[:20] + "\r\nX-Evil: 1\r\n" + TOKEN[20:], id="CR/LF"),
            pytest.param(TOKEN[:20] + "\n" + TOKEN[20:], id="LF"),
            pytest.param(TOKEN[:20] + "é" + TOKEN[20:], id="non-ASCII"),
            pytest.param(TOKEN[:20] + " " + TOKEN[20:], id="inner space"),
            pytest.param("a." + "b" * MAX_TOKEN_LENGTH + ".c", id="too long"),
            pytest.param(json.dumps({"access_token": "x\r\ny.z.w"}), id="CR/LF in JSON"),
        ],
    )
    def test_malformed_values_are_refused(self, value: str) -> None:
        with pytest.raises(TokenMalformed) as excinfo:
            extract_token({"sb-127-auth-token": value}, "127")
        assert value not in str(excinfo.value)

    @pytest.mark.parametrize("value", ["", "   "])
    def test_an_empty_storage_header_is_missing(self, value: str) -> None:
        with pytest.raises(TokenMissing):
            extract_token({"sb-127-auth-token": value}, "127")

    @pytest.mark.parametrize(
        "value",
        [
            TOKEN[:20] + "\r\n" + TOKEN[20:],
            TOKEN[:20] + "é" + TOKEN[20:],
            "eyJhbGciOiJIUzI1NiJ9",
        ],
    )
    def test_bearer_tokens_must_be_jwt_shaped(self, value: str) -> None:
        with pytest.raises(TokenMalformed):
            extract_token({"authorization": f"Bearer {value}"})
