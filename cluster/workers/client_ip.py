"""Who the client is behind a reverse proxy: pure functions of the peer address and the headers.

Only one header is read, the one the configured proxies set
(``server.forwarded_header``, X-Forwarded-For by default), and only when the
TCP peer is one of ``server.trusted_proxies``: anyone else could write any
address there, and a header the proxies do not set (a client's own
``Forwarded`` passed through untouched) is the client's word. Going from the
right (the hop nearest to us), every address that is itself a trusted proxy is
skipped: the first one that is not is the client.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_HEADER = "X-Forwarded-For"
_FOR = re.compile(r'for="?\[?([^\];",]+)', re.IGNORECASE)


@lru_cache(maxsize=64)
def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """``server.trusted_proxies`` (addresses or CIDR networks, checked by the settings) as networks."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: Iterable[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def is_trusted_proxy(peer: str | None, trusted_proxies: Sequence[str]) -> bool:
    """The TCP peer is one of ``server.trusted_proxies``."""
    return bool(peer) and _trusted(_address(peer or ""), parse_networks(tuple(trusted_proxies)))


def forwarded_chain(headers: Mapping[str, str], header: str = DEFAULT_HEADER) -> list[str]:
    """The client addresses the proxies put in ``header``, leftmost first (RFC 7239 syntax for ``Forwarded``)."""
    value = headers.get(header)
    if not value:
        return []
    if header.lower() == "forwarded":
        return _FOR.findall(value)
    return [part.strip() for part in value.split(",") if part.strip()]


def client_ip(peer: str | None, headers: Mapping[str, str], trusted_proxies: Sequence[str],
              header: str = DEFAULT_HEADER) -> str:
    """The client's address: the peer's, or from ``header`` when the peer is a trusted proxy."""
    peer = peer or "unix"
    networks = parse_networks(tuple(trusted_proxies))
    if not networks or not _trusted(_address(peer), networks):
        return peer
    for hop in reversed(forwarded_chain(headers, header)):
        address = _address(hop)
        if address is None:
            break  # garbage in the chain: stop believing it here
        if not _trusted(address, networks):
            return str(address)
    return peer


def is_https(scheme: str, peer: str | None, headers: Mapping[str, str], trusted_proxies: Sequence[str]) -> bool:
    """The client's request is HTTPS: ours directly, or ``X-Forwarded-Proto: https`` from a trusted proxy."""
    if scheme == "https":
        return True
    proto = headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return proto == "https" and is_trusted_proxy(peer, trusted_proxies)
