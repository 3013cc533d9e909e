"""Named HTTP errors. Services and dependencies raise these; FastAPI renders `{"detail": ...}`."""

from __future__ import annotations

from fastapi import HTTPException, status


class NotAuthenticated(HTTPException):
    """401 with the `WWW-Authenticate: Bearer` challenge RFC 6750 asks for."""

    def __init__(self, detail: str = "Not authenticated", *, error: str | None = None) -> None:
        challenge = "Bearer" if error is None else f'Bearer error="{error}"'
        super().__init__(
            status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge}
        )


class PermissionDenied(HTTPException):
    def __init__(self, detail: str = "Not enough permissions") -> None:
        super().__init__(status.HTTP_403_FORBIDDEN, detail)


class NotFound(HTTPException):
    def __init__(self, detail: str = "Not found") -> None:
        super().__init__(status.HTTP_404_NOT_FOUND, detail)


class UserNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("User not found")


class PostNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Post not found")


class RecordConflict(HTTPException):
    """A write that the database refused for a constraint no service rule foresaw."""

    def __init__(self, detail: str = "Conflict with an existing record") -> None:
        super().__init__(status.HTTP_409_CONFLICT, detail)


class EmailAlreadyRegistered(HTTPException):
    def __init__(self) -> None:
        super().__init__(status.HTTP_409_CONFLICT, "A user with this email already exists")


class ServiceUnavailable(HTTPException):
    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(status.HTTP_503_SERVICE_UNAVAILABLE, detail, headers=headers)


class AccountDeactivated(PermissionDenied):
    def __init__(self) -> None:
        super().__init__("This account is deactivated")


class InvalidSupabaseToken(NotAuthenticated):
    def __init__(self, detail: str = "Invalid or expired Supabase token") -> None:
        super().__init__(detail, error="invalid_token")


class SupabaseNotConfigured(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("Supabase is not configured: set SUPABASE_URL")


class SupabaseUnavailable(ServiceUnavailable):
    """Supabase did not give a usable answer; worth retrying. Without `retry_after` (our own
    configuration was refused) retrying will not help, so no `Retry-After` is sent."""

    def __init__(
        self, detail: str = "Supabase is unavailable, try again shortly", *, retry_after: int | None
    ) -> None:
        super().__init__(detail, retry_after=retry_after)


class SupabaseEmailRequired(PermissionDenied):
    def __init__(self) -> None:
        super().__init__(
            "An email address is required: this Supabase account has none "
            "(anonymous, phone-only or wallet sign-in)"
        )


class AccountLinkConflict(HTTPException):
    """409: the Supabase account cannot be linked to the user who holds its email."""

    def __init__(self, detail: str) -> None:
        super().__init__(status.HTTP_409_CONFLICT, detail)


class SupabaseEmailNotConfirmed(PermissionDenied):
    """No account yet, and Supabase has not confirmed the email: creating one would let an
    unconfirmed address claim it, and lock its real owner out (409) later."""

    def __init__(self) -> None:
        super().__init__(
            "Confirm the email in Supabase first: an account is only created for a confirmed "
            "email address"
        )


class SupabaseEmailUnverifiable(PermissionDenied):
    """Locally verified token, no key to ask `/auth/v1/user` whether the email is confirmed."""

    def __init__(self) -> None:
        super().__init__(
            "Cannot tell whether this email is confirmed in Supabase: the server verifies tokens "
            "locally and has no key to ask Supabase (set SUPABASE_PUBLISHABLE_KEY)"
        )


class SupabaseEmailUnusable(PermissionDenied):
    """Supabase handed over an email with whitespace or control characters, or a domain with no
    IDNA ASCII form: refused, never repaired (stripping `"victim@corp.com\\n"` would hand over
    `victim@corp.com`'s account)."""

    def __init__(self) -> None:
        super().__init__(
            "The email address of this Supabase account contains whitespace or control "
            "characters, or its domain is not a valid domain name: correct it in Supabase"
        )


class SupabaseUserBanned(PermissionDenied):
    def __init__(self) -> None:
        super().__init__("This Supabase account is banned")


class TooManyRequests(HTTPException):
    """429: over a rate limit. `Retry-After`: seconds until a request would be accepted again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Too many requests from this address, try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
