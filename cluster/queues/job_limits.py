"""Bounds on what a job request may carry, checked before anything is written to Redis.

Pure checks shared by the HTTP API and ``enqueue()``/``enqueue_sync()``: a
request outside them is the caller's mistake (ValueError naming the bound),
never a half-written job or a server error.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64
# The parameters of enqueue(): a job kwarg by one of these names would collide with them.
RESERVED_KWARGS = frozenset({"self", "name", "priority", "delay", "at", "job_id"})


def nesting_depth(value: Any) -> int:
    """How deep lists and objects nest in ``value`` (a scalar is 0), without recursion.

    Stops counting past ``MAX_DEPTH``: the answer is then ``MAX_DEPTH + 1``.
    """
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_schedule(delay: float | None, at: float | None, now: float, max_delay: float) -> None:
    """``delay`` (s) or ``at`` (epoch s): finite, not negative, at most ``max_delay`` ahead."""
    if delay is not None:
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        if delay > max_delay:
            raise ValueError(f"delay {delay:g}s is over queues.max_delay ({max_delay:g}s)")
    if at is not None:
        if not math.isfinite(at):
            raise ValueError(f"at must be a finite timestamp, got {at!r}")
        if at - now > max_delay:
            raise ValueError(f"at is {at - now:g}s ahead, over queues.max_delay ({max_delay:g}s)")


def encode_arguments(args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any],
                     max_payload_bytes: int) -> tuple[str, str]:
    """``args`` and ``kwargs`` as JSON, once checked: reserved kwarg names, nesting depth, JSON-ness, encoded size.

    The envelope embeds this JSON as it is, so each job's arguments are encoded once.
    """
    if not args and not kwargs:  # the common no-argument job skips the encoder
        return "[]", "{}"
    reserved = RESERVED_KWARGS.intersection(kwargs)
    if reserved:
        raise ValueError(f"kwargs may not use the names {', '.join(sorted(reserved))}")
    if any(nesting_depth(value) > MAX_DEPTH for value in (*args, *kwargs.values())):
        raise ValueError(f"a job argument nests deeper than {MAX_DEPTH} levels")
    try:
        args_json, kwargs_json = _dumps(args), _dumps(kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"job arguments must be JSON: {exc}") from None
    size = len(args_json) + len(kwargs_json) + 3  # as one JSON list [args,kwargs]; ASCII, so chars are bytes
    if size > max_payload_bytes:
        raise ValueError(f"job arguments are {size} bytes encoded, over queues.max_payload_bytes ({max_payload_bytes})")
    return args_json, kwargs_json


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
