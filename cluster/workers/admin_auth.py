"""Who may use an admin surface: a request sent to one of our own names, with the bearer token or from a local client.

The request's ``Host`` must name this instance (``allowed_hosts``): that is what
stops DNS rebinding. Then the bearer token (CLUSTER_ADMIN_TOKEN) is enough;
without it, only a *local* client is admin, and only while ``admin.trust_local``
is on: a loopback or unix-socket peer that is not a configured proxy and whose
request carries no proxy header. A proxy on the same host connects from
loopback and must never turn the internet into a local client: a peer listed in
``server.trusted_proxies`` is never local, whatever it sends. Pure functions of
the request's facts, shared by the HTTP workers' routes and the supervisor's
listener (metrics, dashboard).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cluster.config import Settings
from cluster.workers.allowed_hosts import OwnHosts, own_hosts
from cluster.workers.client_ip import is_trusted_proxy

# Headers some proxy, CDN or tunnel uses to name the client: any of them means "not local".
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host", "True-Client-IP",
                 "CF-Connecting-IP", "Fastly-Client-IP", "X-Client-IP", "X-Cluster-Client-IP", "Client-IP")
MISDIRECTED = 421


@dataclass(frozen=True)
class AdminPolicy:
    """What decides who is admin: the token, whether local clients are trusted, the proxies, our names."""

    token: str | None
    trust_local: bool = True
    trusted_proxies: Sequence[str] = ()
    hosts: OwnHosts = own_hosts(())

    @classmethod
    def of(cls, settings: Settings) -> "AdminPolicy":
        server = settings.server
        return cls(settings.admin.token, settings.admin.trust_local, tuple(server.trusted_proxies),
                   own_hosts([*server.bind, settings.metrics.bind], server.allowed_hosts))


def is_local(peer: str | None, headers: Mapping[str, str], trusted_proxies: Sequence[str] = ()) -> bool:
    """A loopback or unix-socket peer that is not a proxy: not a configured one, and no proxy header."""
    if any(name in headers for name in PROXY_HEADERS):
        return False
    if not peer:  # a unix socket: only users its mode (server.unix_mode, 0600) lets in reach it
        return True
    if is_trusted_proxy(peer, trusted_proxies):
        return False
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
    # aiohttp keeps a header's non-UTF-8 bytes as surrogates: encode them back, never fail on them (a 500).
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode())


def admin_refusal(peer: str | None, headers: Mapping[str, str], policy: AdminPolicy) -> tuple[int, str] | None:
    """None when the request may use an admin surface, else (status, reason) to answer with."""
    if not policy.hosts.allows(headers.get("Host")):
        return MISDIRECTED, "the Host header does not name this instance: add the name to server.allowed_hosts"
    if token_matches(headers.get("Authorization"), policy.token):
        return None
    if "Authorization" in headers:
        return 403, "the bearer token is not valid"
    if policy.trust_local and is_local(peer, headers, policy.trusted_proxies):
        return None
    if not policy.token:
        return 403, "admin routes answer only local clients: set CLUSTER_ADMIN_TOKEN to allow remote ones"
    return 401, "admin route: send Authorization: Bearer <CLUSTER_ADMIN_TOKEN>"
