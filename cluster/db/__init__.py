"""The PostgreSQL read-replica router: writes to the primary, reads over fresh replicas (see ``db.router``).

No aiohttp here: the worker's routes for it live in ``workers.db_routes``.
The names below load on first use, so importing a pure submodule
(``db.freshness``, ``db.selection``) loads neither psycopg nor prometheus_client.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NoHostAvailable": "errors", "PrimaryUnavailable": "errors", "RouterClosed": "errors",
    "RouterError": "errors", "Router": "router", "router_from_settings": "router",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cluster.db' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
