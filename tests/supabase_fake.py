"""The fake Supabase Auth server the tests use. It lives in `app.supabase.fake` (so that
`manage.py dev-supabase` can serve it without the tests, which the Docker image leaves out);
this module keeps the name tests import it by."""

from app.supabase.fake import (
    API_VERSION,
    DEFAULT_JWT_SECRET,
    JWKS_PATH,
    LOGOUT_PATH,
    SIGNUP_PATH,
    TOKEN_PATH,
    USER_PATH,
    FakeSupabase,
    FakeUser,
    RecordedCall,
    Scripted,
    iso_now,
    webhook_payload,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_JWT_SECRET",
    "JWKS_PATH",
    "LOGOUT_PATH",
    "SIGNUP_PATH",
    "TOKEN_PATH",
    "USER_PATH",
    "FakeSupabase",
    "FakeUser",
    "RecordedCall",
    "Scripted",
    "iso_now",
    "webhook_payload",
]
