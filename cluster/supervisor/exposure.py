"""The warning an operator gets when the public port is reachable from the network with no admin token."""

from __future__ import annotations

import ipaddress
import logging

from cluster.config import Settings

log = logging.getLogger("cluster.security")
LOCAL_NAMES = frozenset({"localhost", "ip6-localhost"})


def exposed_binds(binds: list[str]) -> list[str]:
    """The bind addresses other hosts can reach (anything but loopback and unix sockets)."""
    exposed = []
    for bind in binds:
        if bind.startswith("unix:"):
            continue
        host = bind.rpartition(":")[0].strip("[]")
        if host.lower() in LOCAL_NAMES:
            continue
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass  # a host name other than localhost: it may resolve to anything
        exposed.append(bind)
    return exposed


def warn_if_exposed(settings: Settings) -> None:
    """One WARNING line at start: admin routes then answer only local clients, which may not be meant."""
    exposed = exposed_binds(settings.server.bind)
    if exposed and not settings.admin.token:
        log.warning(
            "bound to %s, reachable from the network, with no admin token: /api/enterprise/* answers only "
            "local clients; set CLUSTER_ADMIN_TOKEN to use them remotely", ", ".join(exposed),
            extra={"bind": exposed},
        )
