"""`POST /auth/supabase/webhook`: Supabase tells the API about changes to its users.

Only with SUPABASE_WEBHOOK_SECRET set (404 otherwise, like any unknown path), and only for a
caller sending `Authorization: Bearer <that secret>` (401 otherwise). Both are checked before the
body is read (`WebhookSecret`): without the secret, nothing learns whether a body would have been
accepted, and no one holds room for a body.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import HTTPBearer

from app.config import Settings
from app.dependencies import SessionDep
from app.errors import NotAuthenticated, NotFound
from app.schemas.errors import BODY_ERRORS, responses
from app.schemas.supabase_webhook import SupabaseUserEvent
from app.services.audit_event import WEBHOOK
from app.services.supabase_sync import SupabaseSync


def check_webhook_secret(request: Request) -> None:
    settings: Settings = request.app.state.settings
    secret = settings.SUPABASE_WEBHOOK_SECRET
    if not secret:
        raise NotFound("Not Found")
    scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise NotAuthenticated()
    # Compared in constant time, as bytes (the header as sent, the secret as configured).
    if not hmac.compare_digest(credentials.strip().encode("latin-1"), secret.encode()):
        raise NotAuthenticated("Invalid webhook secret", error="invalid_token")


class WebhookSecret(HTTPBearer):
    """The webhook's bearer secret, for the OpenAPI schema and for the request limits
    (`app/middlewares/body_gate.py`), which check it before the body is read (FastAPI reads a
    body before any dependency runs) and then give the body a lane of its own: other clients'
    bodies can never leave the webhook without room."""

    reserved_body_lane = True

    def check_before_body(self, request: Request) -> None:
        check_webhook_secret(request)

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        check_webhook_secret(request)  # again here, should the app be served without the limits


router = APIRouter(prefix="/auth/supabase", tags=["auth"])

webhook_secret = WebhookSecret(
    auto_error=False,
    scheme_name="SupabaseWebhookSecret",
    description="SUPABASE_WEBHOOK_SECRET, sent by the Database Webhook as a bearer token",
)


@router.post(
    "/webhook",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(*BODY_ERRORS, 401, 404, 503),
    dependencies=[Depends(webhook_secret)],
)
async def supabase_webhook(event: SupabaseUserEvent, session: SessionDep) -> Response:
    """Receive a Supabase Database Webhook for the table `auth.users`.

    A deleted (or soft-deleted) Supabase user: the linked account is deactivated, unlinked and
    its tokens revoked, its data kept. A ban: its tokens are revoked. A newly confirmed email:
    the account takes it when no other account has it. Anything else, or a Supabase user linked
    to no account: nothing. The same call twice does no more than once.

    404 when SUPABASE_WEBHOOK_SECRET is not set; 401 without `Authorization: Bearer <secret>`;
    422 for a body that is not such a webhook.
    """
    await SupabaseSync.apply(session, event, WEBHOOK)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
