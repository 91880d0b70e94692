"""Who the client is behind a reverse proxy: pure functions of the peer address and the headers.

``X-Forwarded-For`` and ``Forwarded`` are believed only when the TCP peer is one of
``server.trusted_proxies``; anyone else could write any address there. Going from the right
(the hop nearest to us), every address that is itself a trusted proxy is skipped: the first
one that is not is the client.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FOR = re.compile(r'for="?\[?([^\];",]+)', re.IGNORECASE)


@lru_cache(maxsize=64)
def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """``server.trusted_proxies`` (addresses or CIDR networks) as networks; ValueError on a typo."""
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


def forwarded_chain(headers: Mapping[str, str]) -> list[str]:
    """The client addresses the proxies appended, leftmost first (``Forwarded`` wins over ``X-Forwarded-For``)."""
    forwarded = headers.get("Forwarded")
    if forwarded:
        return _FOR.findall(forwarded)
    xff = headers.get("X-Forwarded-For")
    return [part.strip() for part in xff.split(",") if part.strip()] if xff else []


def client_ip(peer: str | None, headers: Mapping[str, str], trusted_proxies: Sequence[str]) -> str:
    """The client's address: the peer's, or from the proxy headers when the peer is a trusted proxy."""
    peer = peer or "unix"
    networks = parse_networks(tuple(trusted_proxies))
    if not networks or not _trusted(_address(peer), networks):
        return peer
    for hop in reversed(forwarded_chain(headers)):
        address = _address(hop)
        if address is None:
            break  # garbage in the chain: stop believing it here
        if not _trusted(address, networks):
            return str(address)
    return peer
