"""One JSON object per line from every process, with role, pid and request id.

JSON on stderr by default (journald under systemd); a human format on a
terminal (``format = "auto"``); or a file (``logging.file``) that logrotate
may move: each process reopens it when told (SIGUSR1, which the supervisor
forwards to every child), so no process rotates it and nothing is lost.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import sys
from collections.abc import Callable

from pythonjsonlogger.json import JsonFormatter

from cluster.observability.context import request_id_var

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d"
_TEXT = "%(asctime)s %(levelname)-7s %(role)s[%(process)d] %(name)s: %(message)s"
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


class ReopeningFileHandler(logging.FileHandler):
    """A file handler whose file can be reopened on demand, after logrotate moved it away."""

    def reopen(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()


_handler: logging.Handler | None = None


def resolve_format(fmt: str, stream: object) -> str:
    """'json' or 'text': ``auto`` is text on a terminal, JSON otherwise (journald, pipes, files)."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def make_handler(fmt: str = "json", file: str | None = None, stream: object = None) -> logging.Handler:
    """A handler for ``file`` (reopenable) or ``stream`` (stderr) in ``fmt``, context filter attached."""
    handler: logging.Handler
    if file:
        handler = ReopeningFileHandler(file, encoding="utf-8")
        kind = "json" if fmt == "auto" else fmt
    else:
        stream = stream or sys.stderr
        handler = logging.StreamHandler(stream)  # type: ignore[arg-type]
        kind = resolve_format(fmt, stream)
    handler.setFormatter(json_formatter() if kind == "json" else logging.Formatter(_TEXT))
    handler.addFilter(ContextFilter())
    return handler


def redact_with(redact: Callable[[str], str] | None) -> None:
    """Pass every later log message of this process through ``redact`` (config.mask_text: URL secrets).

    A second net under the call sites that mask what they log: a secret in an
    exception's text, or in a line someone adds later, still never reaches a log.
    """
    global _redact
    _redact = redact


def process_handler() -> logging.Handler:
    """The handler ``configure`` installed in this process (gunicorn's logger shares it)."""
    return _handler or make_handler()


def reopen() -> None:
    """Reopen this process's log file (a no-op when logging to a stream)."""
    if isinstance(_handler, ReopeningFileHandler):
        _handler.reopen()


def set_role(role: str) -> None:
    """Name this process in every later log line (after a fork, say)."""
    global _role
    _role = role


def configure(role: str, level: str = "info", fmt: str = "json", file: str | None = None) -> None:
    """Send every log record of this process to stderr (or ``file``) as JSON lines or text."""
    global _handler
    set_role(role)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    _handler = make_handler(fmt, file)
    root.addHandler(_handler)
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(logging.WARNING)
