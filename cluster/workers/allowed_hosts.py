"""The instance's own names: the ``Host`` values under which an admin surface answers.

A page on ``rebind.attacker.test`` whose name the attacker points at 127.0.0.1
(DNS rebinding) makes the operator's browser send loopback requests that carry
``Host: rebind.attacker.test``: refusing every name that is not ours stops it.
Ours are the loopback names and addresses, the bind addresses (``server.bind``,
``metrics.bind``) and ``server.allowed_hosts``; any port. A wildcard bind
(0.0.0.0, ::) answers on every address of the host, so every IP literal is
ours then: a literal cannot be rebound, only a name can.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


def host_name(host: str) -> str:
    """The name part of a ``Host`` value or a bind address, lowercased: no port, no brackets, no final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class OwnHosts:
    """The names an admin request may carry in ``Host``."""

    names: frozenset[str]
    any_address: bool = False

    def allows(self, host: str | None) -> bool:
        if not host:
            return False  # HTTP/1.1 requires Host; a browser always sends it
        name = host_name(host)
        if name in LOOPBACK_NAMES or name in self.names:
            return True
        address = _ip(name)
        return address is not None and (address.is_loopback or self.any_address)


def own_hosts(binds: Iterable[str | None], allowed: Iterable[str] = ()) -> OwnHosts:
    """Loopback, the hosts of ``binds`` (HOST:PORT; unix: binds name no host) and the ``allowed`` names."""
    names, any_address = set(), False
    for bind in binds:
        if not bind or bind.startswith("unix:"):
            continue
        name = host_name(bind.rpartition(":")[0] if not bind.startswith("[") else bind)
        if name in WILDCARDS:
            any_address = True
        else:
            names.add(name)
    names.update(host_name(host) for host in allowed)
    return OwnHosts(frozenset(names), any_address)
