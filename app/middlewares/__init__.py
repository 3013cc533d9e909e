from app.middlewares.body_limit import BodySizeLimitMiddleware
from app.middlewares.request_context import RequestContextMiddleware
from app.middlewares.request_head_limit import RequestHeadLimitMiddleware
from app.middlewares.security_headers import SecurityHeadersMiddleware

__all__ = [
    "BodySizeLimitMiddleware",
    "RequestContextMiddleware",
    "RequestHeadLimitMiddleware",
    "SecurityHeadersMiddleware",
]
