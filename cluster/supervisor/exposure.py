"""The warnings an operator gets at start about who can reach an admin surface.

- a bind reachable from the network (``server.bind`` or ``metrics.bind``) with no admin token;
- a ``unix:`` bind whose mode lets group or others connect: every user it lets in is local;
- ``admin.trust_local`` on: what "local" means behind a tunnel or a header-less proxy.
"""

from __future__ import annotations

import ipaddress
import logging

from cluster.config import Settings
from cluster.workers.allowed_hosts import LOOPBACK_NAMES, host_name

log = logging.getLogger("cluster.security")


def exposed_binds(binds: list[str | None]) -> list[str]:
    """The bind addresses other hosts can reach (anything but loopback and unix sockets)."""
    exposed = []
    for bind in binds:
        if not bind or bind.startswith("unix:"):
            continue
        host = host_name(bind.rpartition(":")[0] if not bind.startswith("[") else bind)
        if host in LOOPBACK_NAMES:
            continue
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass  # a host name other than localhost: it may resolve to anything
        exposed.append(bind)
    return exposed


def shared_unix_binds(settings: Settings) -> list[str]:
    """The ``unix:`` binds whose socket mode lets users other than us connect."""
    if int(settings.server.unix_mode, 8) & 0o077 == 0:
        return []
    return [bind for bind in settings.server.bind if bind.startswith("unix:")]


def warn_if_exposed(settings: Settings) -> None:
    """One WARNING line per exposure at start; none for a loopback-only, token-less default but the trust_local one."""
    token, trust_local = settings.admin.token, settings.admin.trust_local
    exposed = exposed_binds(settings.server.bind)
    if exposed and not token:
        log.warning(
            "bound to %s, reachable from the network, with no admin token: /api/enterprise/* answers only "
            "local clients; set CLUSTER_ADMIN_TOKEN to use them remotely", ", ".join(exposed),
            extra={"bind": exposed},
        )
    metrics = exposed_binds([settings.metrics.bind])
    if metrics and not token:
        log.warning(
            "metrics.bind %s is reachable from the network with no admin token: /metrics and the dashboard "
            "answer only local clients; set CLUSTER_ADMIN_TOKEN, or bind it to 127.0.0.1", metrics[0],
            extra={"bind": metrics},
        )
    shared = shared_unix_binds(settings)
    if shared and trust_local:
        log.warning(
            "%s: socket mode %s lets other users connect, and each of them is admin (admin.trust_local); "
            "use server.unix_mode 0600 (0660 with server.unix_group) or set admin.trust_local=false",
            ", ".join(shared), settings.server.unix_mode, extra={"bind": shared},
        )
    if trust_local:
        log.warning(
            "admin.trust_local is on: a loopback or unix-socket client that sends no proxy header is admin "
            "without the token. Behind an SSH tunnel, stunnel, a TCP-mode proxy or any proxy that adds no "
            "forwarding header, every client it carries is such a client: list the proxy in "
            "server.trusted_proxies or set admin.trust_local=false (docs/security.md)",
        )
