"""One JSON object per line from every process, with role, pid and request id."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import sys
from collections.abc import Callable

from pythonjsonlogger.json import JsonFormatter

from observability.context import request_id_var

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d"
_RENAME = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
_role = "cluster"
_redact: Callable[[str], str] | None = None


class _RequestIds:
    """Correlation ids: 64 random bits drawn once per process, then a counter.

    As unique as uuid4 across processes (the prefix is drawn anew after every
    fork) without reading os.urandom on every request, which cost more than
    half of the request middleware's time.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_request_ids = _RequestIds()


def new_request_id() -> str:
    """A fresh correlation id (32 hex characters)."""
    return _request_ids.next()


class ContextFilter(logging.Filter):
    """Stamps every record with the process role and the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if _redact is not None:
            message = record.getMessage()
            clean = _redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


def json_formatter() -> logging.Formatter:
    """The formatter every handler of ours uses."""
    formatter = JsonFormatter(_FORMAT, rename_fields=_RENAME, datefmt="%Y-%m-%dT%H:%M:%S%z")
    return formatter


def json_handler(stream: object = None) -> logging.Handler:
    """A stream handler writing JSON lines with the context filter attached."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    return handler


def redact_with(redact: Callable[[str], str] | None) -> None:
    """Pass every later log message of this process through ``redact`` (config.mask_text: URL secrets).

    A second net under the call sites that mask what they log: a secret in an
    exception's text, or in a line someone adds later, still never reaches a log.
    """
    global _redact
    _redact = redact


def set_role(role: str) -> None:
    """Name this process in every later log line (after a fork, say)."""
    global _role
    _role = role


def configure(role: str, level: str = "info") -> None:
    """Send every log record of this process to stderr as JSON lines."""
    set_role(role)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler())
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(logging.WARNING)
