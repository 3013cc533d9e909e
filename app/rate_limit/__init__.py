"""Per-client rate limits, counted in Redis when `REDIS_URL` is set (shared by every worker and
replica), else in the memory of each process.

- `config`: the checks behind the `REDIS_URL` and `RATE_LIMIT_*` settings;
- `limiter`: `RateLimiter`, made once per app in the lifespan (`app.state.rate_limiter`);
- `client`: which client a request counts against (its address);
- `dependencies`: the FastAPI dependencies that apply a limit to a route (429 over it).
"""
