"""The database hosts the router knows: names, configured roles and weights, from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from psycopg.conninfo import conninfo_to_dict

from cluster.config import Settings

Role = Literal["primary", "replica"]


@dataclass(frozen=True)
class HostSpec:
    """One configured host. ``name`` is ``host:port``: safe to log and to use as a metric label."""

    name: str
    url: str
    role: Role
    weight: int


def host_name(url: str) -> str:
    """``host:port`` of a PostgreSQL URL, without credentials (a socket dir given as ``?host=`` counts as host)."""
    params = conninfo_to_dict(url)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


def hosts_from_settings(settings: Settings) -> list[HostSpec]:
    """The primary first, then the replicas in their configured order; duplicate names get a suffix."""
    db = settings.database
    if not db.url:
        return []
    specs = [HostSpec(host_name(db.url), db.url, "primary", 1)]
    seen = {specs[0].name}
    for index, replica in enumerate(db.replicas, 1):
        name = host_name(replica.url)
        if name in seen:
            name = f"{name}#{index}"
        seen.add(name)
        specs.append(HostSpec(name, replica.url, "replica", replica.weight))
    return specs
