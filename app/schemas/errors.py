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
    429: "Too many requests from this client address; retry after `Retry-After` seconds",
    503: "The database or Supabase is unavailable",
}


class ErrorResponse(BaseModel):
    detail: str


# What any operation that takes a request body may also answer.
BODY_ERRORS = (400, 413)


# Response headers documented with a status code.
HEADERS: dict[int, dict[str, Any]] = {
    429: {
        "Retry-After": {
            "description": "Seconds until a request from this client would be accepted again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"model": ErrorResponse, "description": DESCRIPTIONS[code]}
        | ({"headers": HEADERS[code]} if code in HEADERS else {})
        for code in codes
    }
