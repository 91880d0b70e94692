"""The master side: CLI, supervisor, HTTP tier, health checks, control API."""

__version__ = "0.1.0"
