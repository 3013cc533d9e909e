"""A fake Supabase Auth on 127.0.0.1, for tests and `manage.py dev-supabase` (see server.py)."""

from app.supabase.fake.protocol import (
    ADMIN_USERS_PATH,
    API_VERSION,
    JWKS_PATH,
    LOGOUT_PATH,
    SIGNUP_PATH,
    TOKEN_PATH,
    USER_PATH,
    RecordedCall,
    Scripted,
)
from app.supabase.fake.server import DEFAULT_JWT_SECRET, FakeSupabase
from app.supabase.fake.users import FakeUser, iso_now, webhook_payload

__all__ = [
    "ADMIN_USERS_PATH",
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
