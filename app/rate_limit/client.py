"""Which client a request counts against: its address.

That is the TCP peer, or, when Uvicorn trusts the peer as a proxy (`--proxy-headers`, on in
`manage.py run`, and the peer listed in `FORWARDED_ALLOW_IPS`, default 127.0.0.1), the address
the proxy forwarded in `X-Forwarded-For`: Uvicorn has already put it in `request.client`.

An IPv6 client counts per /64 network: one host usually holds a whole /64, and could otherwise
take a fresh address for each request.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import Request

IPV6_CLIENT_PREFIX = 64
UNKNOWN_CLIENT = "unknown"  # no address (e.g. a Unix socket without a proxy in front)


def client_address(request: Request) -> str:
    return client_key(request.client.host if request.client is not None else None)


@lru_cache(maxsize=4096)  # parsed once per address, not on every request (bounded, LRU)
def client_key(host: str | None) -> str:
    """The key a peer's host counts under (see the module's docstring); for code that has only
    the ASGI scope (`scope["client"]`), such as the request-body limits."""
    if not host:
        return UNKNOWN_CLIENT
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address (a test client's name): counted as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)
