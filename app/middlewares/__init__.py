from app.middlewares.body_limit import BodySizeLimitMiddleware
from app.middlewares.request_context import RequestContextMiddleware

__all__ = ["BodySizeLimitMiddleware", "RequestContextMiddleware"]
