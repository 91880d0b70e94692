"""The fork server's protocol: one JSON line each way, at most ``MAX_LINE`` bytes.

First ``{"ready": true, "pid": ..., "preloaded": ...}`` from the fork server;
then per pool process a ``ForkRequest`` from the supervisor, answered by
``{"pid": N}`` or ``{"error": "..."}``. Kept apart from ``queues.fork_server``
so the supervisor speaks it without importing the pools' runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_LINE = 64 * 1024


class ProtocolError(ValueError):
    """A line that is not one JSON object within ``MAX_LINE`` bytes."""


def encode(message: dict[str, Any]) -> bytes:
    line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ProtocolError(f"a line of {len(line)} bytes is over {MAX_LINE}")
    return line


def decode(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise ProtocolError(f"a line over {MAX_LINE} bytes or cut short")
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object")
    return message


@dataclass(frozen=True)
class ForkRequest:
    """What one pool process is: its ``queues.pool`` arguments, its name and its environment's changes."""

    argv: list[str]
    name: str
    env: dict[str, str]
    unset: list[str]

    @classmethod
    def parse(cls, message: dict[str, Any]) -> "ForkRequest":
        argv, name = message.get("argv"), message.get("name", "")
        env, unset = message.get("env", {}), message.get("unset", [])
        if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
            raise ProtocolError("argv must be a list of strings")
        if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise ProtocolError("env must map strings to strings")
        if not (isinstance(unset, list) and all(isinstance(k, str) for k in unset) and isinstance(name, str)):
            raise ProtocolError("unset must be a list of strings, name a string")
        return cls(argv, name, env, unset)
