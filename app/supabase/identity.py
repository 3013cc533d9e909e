"""Who a Supabase token belongs to, read from `/auth/v1/user` or from verified JWT claims."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.fields import EMAIL_MAX_LENGTH, FULL_NAME_MAX_LENGTH, canonical_email, to_single_line
from app.supabase.timestamps import is_future


class InvalidIdentity(ValueError):
    """The user data does not have the shape Supabase gives it."""


@dataclass(frozen=True)
class SupabaseIdentity:
    id: str
    """The Supabase user's UUID, canonical lower-case form."""
    email: str
    """In the canonical form (`supabase_email`), or as Supabase gave it when it has none (then
    `is_usable_email` refuses it); `""` for anonymous, phone-only and wallet users."""
    email_confirmed: bool | None
    """`email_confirmed_at` is set. None: unknown (JWT claims do not carry it)."""
    full_name: str | None
    banned: bool = False
    """`banned_until` is in the future. JWT claims carry no ban: False for a locally verified
    token (docs/supabase.md, "Verification modes")."""


def identity_from_user(user: Mapping[str, Any]) -> SupabaseIdentity:
    """From the `/auth/v1/user` answer. Only `email_confirmed_at` says the email is confirmed:
    `confirmed_at` is also set by a phone confirmation and `user_metadata` is user-editable."""
    confirmed_at = user.get("email_confirmed_at")
    return SupabaseIdentity(
        id=_user_id(user.get("id")),
        email=_email(user.get("email", "")),
        email_confirmed=isinstance(confirmed_at, str) and bool(confirmed_at),
        full_name=full_name(user.get("user_metadata")),
        banned=_banned(user.get("banned_until")),
    )


def identity_from_claims(claims: Mapping[str, Any]) -> SupabaseIdentity:
    """From the claims of a locally verified access token. The `email` claim may be stale and
    nothing in it says whether the email is confirmed."""
    return SupabaseIdentity(
        id=_user_id(claims.get("sub")),
        email=_email(claims.get("email", "")),
        email_confirmed=None,
        full_name=full_name(claims.get("user_metadata")),
    )


def full_name(metadata: object) -> str | None:
    """`user_metadata.full_name`, else `.name` (what OAuth providers fill in), made storable."""
    if not isinstance(metadata, Mapping):
        return None
    for key in ("full_name", "name"):
        value = metadata.get(key)
        if isinstance(value, str):
            # The user can write anything here: kept only as far as a full name may hold it.
            cleaned = to_single_line(value, FULL_NAME_MAX_LENGTH)
            if cleaned:
                return cleaned
    return None


def _user_id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentity("user id is missing")
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise InvalidIdentity("user id is not a UUID") from exc


def _banned(banned_until: object) -> bool:
    """GoTrue (before 2026-07) answers `/auth/v1/user` for a banned user, with `banned_until`;
    later versions refuse the token instead (403 `user_banned`)."""
    try:
        return is_future(banned_until)
    except ValueError as exc:
        raise InvalidIdentity("banned_until is not a timestamp") from exc


def _email(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentity("email is not a string")
    return supabase_email(value)


def supabase_email(email: str) -> str:
    """An address from Supabase in the form the API stores and compares (`canonical_email`),
    or as it is when it has none (`""`, or a domain IDNA cannot write): `is_usable_email` then
    refuses it."""
    try:
        return canonical_email(email)
    except ValueError:
        return email


def is_usable_email(email: str) -> bool:
    """An address the API may match and store as it is: in the canonical form, no whitespace
    or control character anywhere, storable length. Nothing is stripped or repaired:
    `"victim@corp.com\n"` is not `victim@corp.com`, and treating it so would hand that account
    to whoever got Supabase to accept the odd spelling. (An address never contains whitespace;
    quoted local parts with spaces are refused by GoTrue and by our own email validation
    alike.)"""
    try:
        canonical = canonical_email(email)
    except ValueError:
        return False
    return (
        canonical == email
        and len(email) <= EMAIL_MAX_LENGTH
        and email.isprintable()
        and not any(ch.isspace() for ch in email)
    )
