"""The PostgreSQL read-replica router (see ``workers.db.router``)."""

from workers.db.errors import NoHostAvailable, PrimaryUnavailable, RouterClosed, RouterError
from workers.db.router import Router, router_from_settings
from workers.db.web import DB_KEY

__all__ = ["DB_KEY", "NoHostAvailable", "PrimaryUnavailable", "Router", "RouterClosed", "RouterError", "router_from_settings"]
