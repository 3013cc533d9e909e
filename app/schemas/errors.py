"""The error body every non-2xx answer has, for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

DESCRIPTIONS = {
    400: (
        "Bad request: a body that cannot be read (e.g. JSON that is not UTF-8), more than one "
        "`Authorization` header, or a `Host` outside ALLOWED_HOSTS"
    ),
    401: "Missing, invalid or expired token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with an existing record",
    408: (
        "The request body did not arrive in time (BODY_TIMEOUT_SECONDS) or fast enough "
        "(MIN_BODY_DATA_RATE)"
    ),
    413: "The request body is larger than the limit (MAX_BODY_BYTES)",
    414: "The URL is longer than 8 KiB",
    429: "Too many requests from this client address; retry after `Retry-After` seconds",
    431: "The request headers are larger than 64 KiB",
    503: (
        "The database or Supabase is unavailable, or the server already holds all the request "
        "bodies it may (MAX_INFLIGHT_BODY_BYTES), or this client's share of them "
        "(MAX_CLIENT_INFLIGHT_BODY_BYTES)"
    ),
}


class ErrorResponse(BaseModel):
    detail: str


# What any operation that takes a request body may also answer.
BODY_ERRORS = (400, 413)
# What the request limits (app/middlewares/request_limits.py) may answer on any operation,
# before it runs: a forged Host or two Authorization headers, a URL or headers too large.
ANY_OPERATION_ERRORS = (400, 414, 431)
# ...and on any operation whose method may carry a body (the limits read it for the app): one
# too large, too slow, or arriving while the server holds all the bodies it may; and, for these
# writes, a row deleted under the request (404) or a constraint no service foresaw (409), from
# app/exception_handlers.py.
BODY_METHOD_ERRORS = (404, 408, 409, 413, 503)
BODILESS_METHODS = frozenset({"get", "head", "options"})


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


def document_common_errors(app: FastAPI) -> None:
    """Declare, on every operation of the OpenAPI schema, the answers the middlewares give
    before any route runs: one place, so a new route cannot forget them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for methods in document["paths"].values():
            for method, operation in methods.items():
                codes: tuple[int, ...] = ANY_OPERATION_ERRORS
                if method not in BODILESS_METHODS:
                    codes += BODY_METHOD_ERRORS
                answers = operation.setdefault("responses", {})
                for code in codes:
                    answers.setdefault(str(code), error_response(code))
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def error_response(code: int) -> dict[str, Any]:
    """A response object of the OpenAPI document, as `responses()` declares it to FastAPI."""
    schema = {"$ref": "#/components/schemas/ErrorResponse"}
    answer: dict[str, Any] = {
        "description": DESCRIPTIONS[code],
        "content": {"application/json": {"schema": schema}},
    }
    if code in HEADERS:
        answer["headers"] = HEADERS[code]
    return answer
