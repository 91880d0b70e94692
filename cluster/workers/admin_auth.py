"""Who may use an admin surface: a bearer token (CLUSTER_ADMIN_TOKEN), or a truly local client.

A local client is a loopback (or unix socket) peer whose request carries no
proxy header: a reverse proxy on the same host connects from loopback, and
must never turn the internet into a local client. Pure functions of the
request's facts, shared by the HTTP workers' routes and the supervisor's
listener (metrics, dashboard).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_local(peer: str | None, headers: Mapping[str, str]) -> bool:
    """A loopback or unix-socket peer that did not come through a proxy."""
    if any(name in headers for name in PROXY_HEADERS):
        return False
    if peer is None or peer == "":  # unix socket: only users allowed by its mode reach it
        return True
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def token_matches(authorization: str | None, token: str | None) -> bool:
    """``Authorization: Bearer <token>`` against the configured token, in constant time."""
    if not token or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def admin_refusal(peer: str | None, headers: Mapping[str, str], token: str | None) -> tuple[int, str] | None:
    """None when the request may use an admin surface, else (status, reason) to answer with."""
    if token_matches(headers.get("Authorization"), token):
        return None
    if "Authorization" in headers:
        return 403, "the bearer token is not valid"
    if is_local(peer, headers):
        return None
    if not token:
        return 403, "admin routes answer only local clients: set CLUSTER_ADMIN_TOKEN to allow remote ones"
    return 401, "admin route: send Authorization: Bearer <CLUSTER_ADMIN_TOKEN>"
