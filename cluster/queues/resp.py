"""RESP for the shared connection (``queues.multiplexed``): commands encoded as redis-py encodes them, replies
parsed by ``hiredis.Reader`` with Redis errors as redis-py's exception classes, all without redis-py's internals.

Only ``redis.exceptions`` (public) is used from redis-py: its parser, encoder and error table are private
and change between releases.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError as RedisConnectionError,
    DataError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)

NOT_ENOUGH_DATA = object()
"""What ``Reader.gets`` answers while a reply is incomplete (False is a reply in RESP3)."""

_ERRORS_BY_CODE: dict[str, type[Exception]] = {
    "NOSCRIPT": NoScriptError,
    "OOM": OutOfMemoryError,
    "READONLY": ReadOnlyError,
    "NOPERM": NoPermissionError,
    "EXECABORT": ExecAbortError,
    "LOADING": BusyLoadingError,
    "WRONGPASS": AuthenticationError,
    "NOAUTH": AuthenticationError,
}
_ERR_MESSAGES: dict[str, type[Exception]] = {
    "max number of clients reached": RedisConnectionError,
    "invalid password": AuthenticationError,
}


def reply_error(message: str) -> Exception:
    """The exception redis-py makes of a Redis error reply: the class of its code (the code then left out of
    the message, as is ``ERR``), else ResponseError with the whole message (``WRONGTYPE ...``)."""
    code, _, rest = message.partition(" ")
    if code in _ERRORS_BY_CODE:
        return _ERRORS_BY_CODE[code](rest)
    if code == "ERR":
        return _ERR_MESSAGES.get(rest, ResponseError)(rest)
    return ResponseError(message)


def new_reader(encoding: str | None, errors: str) -> Any:
    """A reply parser; ``encoding`` None leaves bulk strings as bytes (redis-py's ``decode_responses=False``)."""
    options: dict[str, Any] = {"replyError": reply_error, "notEnoughData": NOT_ENOUGH_DATA}
    if encoding is not None:
        options.update(encoding=encoding, errors=errors)
    return hiredis.Reader(**options)


def encode_arg(value: Any, encoding: str, errors: str) -> bytes:
    """One argument as redis-py sends it (numbers as their repr); DataError for any other type, bool included."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode(encoding, errors)
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    raise DataError(f"Invalid input of type: {type(value).__name__!r}. "
                    "Convert to a bytes, string, int or float first.")


def encode_command(args: tuple[Any, ...] | list[Any], encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """A command as one RESP array; a first argument of several words ("SCRIPT LOAD") is sent as words."""
    first = args[0]
    words = (first.encode() if isinstance(first, str) else first).split()
    out = [b"*%d\r\n" % (len(words) + len(args) - 1)]
    out.extend(b"$%d\r\n%b\r\n" % (len(word), word) for word in words)
    for arg in args[1:]:  # the common types first: this runs for every command of the process
        part = arg.encode(encoding, errors) if type(arg) is str else encode_arg(arg, encoding, errors)
        out.append(b"$%d\r\n%b\r\n" % (len(part), part))
    return b"".join(out)
