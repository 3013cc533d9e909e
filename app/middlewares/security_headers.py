"""Security headers on every answer (errors and the last-resort 500 included); the request
context middleware adds them when the answer starts.

What OWASP's REST Security Cheat Sheet asks of a JSON API: no MIME sniffing, no framing, no
caching of answers that may hold personal data, no referrer, and a CSP that lets a JSON answer
load nothing. The documentation pages (Swagger UI, ReDoc) run inline scripts and load their
assets (app/api_docs.py), so they and the assets get neither the CSP nor `no-store`; they still
cannot be framed.

The admin site (/admin, server-rendered pages) loads its own scripts, styles and fonts from
/admin/statics and runs a few inline scripts (SQLAdmin's, and the CSRF one): its CSP allows
'self' and inline code, nothing from elsewhere, and forms may only post to this origin.

`Strict-Transport-Security` belongs to whatever terminates TLS (the reverse proxy).
"""

from __future__ import annotations

from collections.abc import Container, Iterable

Header = tuple[bytes, bytes]

EVERY_ANSWER: list[Header] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
API_ANSWER: list[Header] = [
    *EVERY_ANSWER,
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]

ADMIN_PREFIX = "/admin"
ADMIN_ANSWER: list[Header] = [
    *EVERY_ANSWER,
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
        b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"cache-control", b"no-store"),
]


class DocsPaths:
    """The documentation's paths: exact ones, and prefixes (ending with `/`) that cover
    everything under them (the pages' assets)."""

    def __init__(self, paths: Iterable[str | None]) -> None:
        kept = [path for path in paths if path]
        self.exact = frozenset(kept)
        self.prefixes = tuple(path for path in kept if path.endswith("/"))

    def __contains__(self, path: object) -> bool:
        if path in self.exact:
            return True
        return bool(self.prefixes) and isinstance(path, str) and path.startswith(self.prefixes)


def with_security_headers(
    headers: list[Header], path: str, docs_paths: Container[str]
) -> list[Header]:
    """`headers` plus the security headers the answer does not set itself."""
    if path in docs_paths:
        extra = EVERY_ANSWER
    elif path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
        extra = ADMIN_ANSWER
    else:
        extra = API_ANSWER
    present = {name.lower() for name, _ in headers}
    return headers + [header for header in extra if header[0] not in present]
