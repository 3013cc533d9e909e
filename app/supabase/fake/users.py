"""The fake Supabase's users: rows of `auth.users`, rendered the two ways Supabase shows them.

- `FakeUser.to_json()`: GoTrue's `models.User` JSON, what `GET /auth/v1/user` (and the admin
  user list) answers (`""` for
  a missing email or phone; `email_confirmed_at`, `banned_until`, ... absent when unset;
  timestamps in RFC 3339 with `Z`).
- `FakeUser.to_row()`: the `auth.users` row as a Database Webhook carries it (PostgreSQL's
  `to_jsonb(NEW)`: every column, NULL as `null`, timestamps like `2026-01-02T03:04:05.12+00:00`).

`webhook_payload()` is the body `supabase_functions.http_request()` posts for a row change.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

Json = dict[str, Any]
EventType = Literal["INSERT", "UPDATE", "DELETE"]

INSTANCE_ID = "00000000-0000-0000-0000-000000000000"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_now() -> str:
    return api_time(utc_now())


def api_time(moment: datetime) -> str:
    """How GoTrue's JSON writes a time (Go's RFC 3339, UTC)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_time(moment: datetime | None) -> str | None:
    """How PostgreSQL's `to_jsonb()` writes a `timestamptz` (UTC session): trailing zeros of the
    fraction dropped, `+00:00` offset."""
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "+00:00"


@dataclass
class FakeUser:
    """One row of `auth.users` (the columns the fake keeps; `to_row()` adds the others)."""

    id: str
    email: str = ""
    email_confirmed_at: datetime | None = None
    phone: str = ""
    phone_confirmed_at: datetime | None = None
    is_anonymous: bool = False
    user_metadata: Json = field(default_factory=dict)
    app_metadata: Json = field(default_factory=dict)
    password: str | None = None
    banned_until: datetime | None = None
    email_change: str = ""
    """A new address waiting for confirmation (GoTrue's `new_email`)."""
    email_change_sent_at: datetime | None = None
    last_sign_in_at: datetime | None = None
    deleted_at: datetime | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

    @property
    def banned(self) -> bool:
        return self.banned_until is not None and self.banned_until > utc_now()

    @property
    def confirmed_at(self) -> datetime | None:
        """The generated column: `LEAST(email_confirmed_at, phone_confirmed_at)`, so a phone
        confirmation alone sets it (never read it as an email confirmation)."""
        confirmations = [t for t in (self.email_confirmed_at, self.phone_confirmed_at) if t]
        return min(confirmations) if confirmations else None

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
            "created_at": api_time(self.created_at),
            "updated_at": api_time(self.updated_at),
            "is_anonymous": self.is_anonymous,
        }
        # omitempty in GoTrue: absent, not null, when unset.
        optional = {
            "email_confirmed_at": self.email_confirmed_at,
            "phone_confirmed_at": self.phone_confirmed_at,
            "confirmed_at": self.confirmed_at,
            "last_sign_in_at": self.last_sign_in_at,
            "banned_until": self.banned_until,
            "email_change_sent_at": self.email_change_sent_at,
            "deleted_at": self.deleted_at,
        }
        data.update({key: api_time(value) for key, value in optional.items() if value})
        if self.email_change:
            data["new_email"] = self.email_change
        return data

    def to_row(self) -> Json:
        return {
            "instance_id": INSTANCE_ID,
            "id": self.id,
            "aud": "authenticated",
            "role": "authenticated",
            "email": self.email or None,
            "encrypted_password": _password_hash(self) if self.password else "",
            "email_confirmed_at": row_time(self.email_confirmed_at),
            "invited_at": None,
            "confirmation_token": "",
            "confirmation_sent_at": None,
            "recovery_token": "",
            "recovery_sent_at": None,
            "email_change_token_new": "",
            "email_change": self.email_change,
            "email_change_sent_at": row_time(self.email_change_sent_at),
            "last_sign_in_at": row_time(self.last_sign_in_at),
            "raw_app_meta_data": self.app_metadata,
            "raw_user_meta_data": self.user_metadata,
            "is_super_admin": None,
            "created_at": row_time(self.created_at),
            "updated_at": row_time(self.updated_at),
            "phone": self.phone or None,
            "phone_confirmed_at": row_time(self.phone_confirmed_at),
            "phone_change": "",
            "phone_change_token": "",
            "phone_change_sent_at": None,
            "confirmed_at": row_time(self.confirmed_at),
            "email_change_token_current": "",
            "email_change_confirm_status": 0,
            "banned_until": row_time(self.banned_until),
            "reauthentication_token": "",
            "reauthentication_sent_at": None,
            "is_sso_user": False,
            "deleted_at": row_time(self.deleted_at),
            "is_anonymous": self.is_anonymous,
        }


def webhook_payload(type_: EventType, *, record: Json | None, old_record: Json | None) -> Json:
    """What a Database Webhook on `auth.users` posts: `jsonb_build_object('old_record', OLD,
    'record', NEW, 'type', TG_OP, 'table', TG_TABLE_NAME, 'schema', TG_TABLE_SCHEMA)`."""
    return {
        "type": type_,
        "table": "users",
        "schema": "auth",
        "record": record,
        "old_record": old_record,
    }


def obfuscated(user_id: str, value: str) -> str:
    """What GoTrue's soft delete writes over an email or phone: a hash, never the address."""
    digest = hashlib.sha256((user_id + value).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _password_hash(user: FakeUser) -> str:
    """Shaped like the bcrypt hash the real column holds; derived, so it is stable per user."""
    digest = hashlib.sha256(f"{user.id}:{user.password}".encode()).hexdigest()
    return "$2a$10$" + digest[:53]
