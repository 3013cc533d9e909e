from app.middlewares.request_context import RequestContextMiddleware
from app.middlewares.request_limits import RequestLimitsMiddleware

__all__ = ["RequestContextMiddleware", "RequestLimitsMiddleware"]
