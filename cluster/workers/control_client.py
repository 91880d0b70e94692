"""Talks to the supervisor's control API over its unix socket (HTTP + JSON)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp

from cluster.config import state_files

CONTROL_SOCKET = state_files.CONTROL_SOCKET.name


class ControlError(Exception):
    """The supervisor could not be reached (``status`` None) or refused the request (its HTTP status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def socket_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where the supervisor of a state dir listens."""
    return Path(state_dir) / CONTROL_SOCKET


async def call(
    state_dir: str | os.PathLike[str],
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> Any:
    """One request to the control API; returns the decoded JSON body."""
    sock = socket_path(state_dir)
    if not sock.exists():
        raise ControlError(f"no supervisor is running: {sock} does not exist")
    connector = aiohttp.UnixConnector(path=str(sock))
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.request(method, f"http://cluster{path}", json=payload) as response:
                body = await response.json(content_type=None)
                if response.status >= 400:
                    message = body.get("error") if isinstance(body, dict) else body
                    raise ControlError(f"{method} {path}: {response.status} {message}", response.status)
                return body
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ControlError(f"cannot reach the supervisor at {sock}: {exc}") from exc
