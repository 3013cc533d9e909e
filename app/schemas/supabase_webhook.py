"""The body of a Supabase Database Webhook on `auth.users` (`POST /auth/supabase/webhook`).

`supabase_functions.http_request()` posts `{"type", "table", "schema", "record", "old_record"}`,
the rows as PostgreSQL's `to_jsonb()` writes them: every column of `auth.users` (about 35, the
password hash included), NULL as `null`, timestamps like `2026-01-02T03:04:05.12+00:00`. Only
the columns the API acts on are read; the others are ignored (and never stored or logged).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator

from app.supabase.timestamps import parse_timestamp


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a timestamp must be a string")
    return parse_timestamp(value)


Timestamp = Annotated[
    datetime,
    PlainValidator(_timestamp),
    WithJsonSchema({"type": "string", "description": "timestamptz as to_jsonb() writes it"}),
]


class AuthUserRecord(BaseModel):
    """The columns of an `auth.users` row the API reads."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    email: str | None = None
    email_confirmed_at: Timestamp | None = None
    banned_until: Timestamp | None = None
    deleted_at: Timestamp | None = None

    @property
    def supabase_id(self) -> str:
        return str(self.id)


class SupabaseUserEvent(BaseModel):
    """INSERT carries `record`, DELETE `old_record`, UPDATE both (of the same user)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["INSERT", "UPDATE", "DELETE"]
    table: Literal["users"]
    schema_: Literal["auth"] = Field(alias="schema")
    record: AuthUserRecord | None
    old_record: AuthUserRecord | None

    @model_validator(mode="after")
    def _rows_match_the_type(self) -> SupabaseUserEvent:
        has = (self.record is not None, self.old_record is not None)
        expected = {"INSERT": (True, False), "UPDATE": (True, True), "DELETE": (False, True)}
        if has != expected[self.type]:
            raise ValueError(
                "INSERT carries `record`, DELETE `old_record`, UPDATE both (the other is null)"
            )
        if self.record and self.old_record and self.record.id != self.old_record.id:
            raise ValueError("`record` and `old_record` are not the same user")
        return self
