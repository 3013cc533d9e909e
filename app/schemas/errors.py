"""The error body every non-2xx answer has, for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

DESCRIPTIONS = {
    401: "Missing, invalid or expired token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with an existing record",
    503: "The database or Supabase is unavailable",
}


class ErrorResponse(BaseModel):
    detail: str


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": DESCRIPTIONS[code]} for code in codes}
