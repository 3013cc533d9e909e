"""`SupabaseToken`: the Supabase access token a request carries, for routes that take one.

    @router.get("/auth/verify_supabase_token")
    async def exchange(token: SupabaseToken, ...) -> ...:

Reads `Authorization: Bearer <token>` or the `sb-<project-ref>-auth-token` header(s) (every format
of app/supabase/token_extraction.py; Authorization wins). Answers, before the route runs:
- 503 when Supabase is not configured (there is no project to read a token for);
- 401 `WWW-Authenticate: Bearer` when there is no token;
- 401 `WWW-Authenticate: Bearer error="invalid_token"` when a header value is not a well-formed
  token (Supabase is not asked).
The token is only shaped like a JWT here: verifying it is `SupabaseAuth.verify`'s job.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.errors import InvalidSupabaseToken, NotAuthenticated
from app.supabase.client import SupabaseAuth, get_supabase_auth
from app.supabase.token_extraction import TokenExtractionError, TokenMissing, extract_token


async def supabase_token(
    request: Request, supabase: Annotated[SupabaseAuth, Depends(get_supabase_auth)]
) -> str:
    supabase.ensure_configured()
    try:
        return extract_token(request.headers, supabase.project_ref)
    except TokenMissing as exc:
        raise NotAuthenticated(str(exc)) from exc
    except TokenExtractionError as exc:
        raise InvalidSupabaseToken(str(exc)) from exc


SupabaseToken = Annotated[str, Depends(supabase_token)]
