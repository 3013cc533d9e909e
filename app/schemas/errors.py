"""The error body every non-2xx answer has, for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

DESCRIPTIONS = {
    400: "The request body cannot be read (e.g. JSON that is not UTF-8)",
    401: "Missing, invalid or expired token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with an existing record",
    413: "The request body is larger than the limit (MAX_BODY_BYTES)",
    503: "The database or Supabase is unavailable",
}


class ErrorResponse(BaseModel):
    detail: str


# What any operation that takes a request body may also answer.
BODY_ERRORS = (400, 413)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": DESCRIPTIONS[code]} for code in codes}
