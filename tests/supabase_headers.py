"""Helpers to send a Supabase token the ways supabase-js and its helpers store it."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

EXCHANGE = "/auth/verify_supabase_token"
STORAGE_KEY = "sb-127-auth-token"  # SUPABASE_URL is http://127.0.0.1:<port>


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def base64url_json(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return "base64-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def percent_encoded_json(value: Any) -> str:
    return quote(json.dumps(value, separators=(",", ":")), safe="")


def chunked(value: str, size: int = 100, key: str = STORAGE_KEY) -> dict[str, str]:
    """`key.0`, `key.1`, ... as @supabase/ssr splits a long cookie."""
    return {
        f"{key}.{i}": value[start : start + size]
        for i, start in enumerate(range(0, len(value), size))
    }
