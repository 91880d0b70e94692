"""The embedded redis-server's own log: kept in ``<state_dir>/redis.log``, what needs an operator said in ours.

redis-server writes its banner, ASCII logo and notices in its own format; on a terminal they
sat between our lines. Its config sends them to this file (the previous run's is kept as
``redis.log.1``, so the files stay bounded by two runs), and a task of the queue tier reads
what it appends and logs in our format the lines an operator must see: Redis's warnings
(``#``), where it reports a start that fails and persistence errors. The kernel overcommit
warning, a paragraph with a URL, becomes one line with its fix.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

from cluster.config import state_files

log = logging.getLogger("cluster.redis")
LOG_NAME = state_files.REDIS_LOG.name
PREVIOUS = state_files.REDIS_LOG_PREVIOUS.name
READ_EVERY = 0.5
MAX_READ = 64 * 1024  # per read, and the longest line kept whole

# "8320:M 07 Dec 2026 13:03:45.946 # Server initialized": pid, role, time, level mark, text.
_LINE = re.compile(r"^\d+:[XCSM] \d{1,2} \w{3} \d{4} [\d:.]+ ([.\-*#]) (.*)$")
# Warning-level lines of every normal start and stop: nothing for an operator to do.
_ROUTINE = ("oO0OoO0OoO0Oo Redis is starting", "Redis version=", "Configuration loaded", "Server initialized",
            "User requested shutdown", "Redis is now ready to exit", "Received SIGTERM", "Received SIGINT")
_ERROR = re.compile(r"error|fatal|failed|can't|cannot|unable|MISCONF|refus", re.IGNORECASE)
OVERCOMMIT = ("the kernel's memory overcommit is off (vm.overcommit_memory=0): a background save of the embedded "
              "Redis may fail under memory pressure; fix: sysctl vm.overcommit_memory=1, and add "
              "'vm.overcommit_memory = 1' to /etc/sysctl.conf")


def relayed(line: str) -> tuple[int, str] | None:
    """Pure: (level, message) for a line of Redis's log that an operator must see; None for the rest."""
    match = _LINE.match(line)
    if match is None or match.group(1) != "#":  # the logo, notices, debug
        return None
    text = match.group(2).strip()
    if "overcommit" in text.lower():
        return logging.WARNING, OVERCOMMIT
    if text.startswith(_ROUTINE):
        return None
    return (logging.ERROR if _ERROR.search(text) else logging.WARNING), f"redis-server: {text}"


def keep_previous(state_dir: Path) -> Path:
    """Move the last run's log aside (one kept); the path redis-server is to log to."""
    path = state_dir / LOG_NAME
    try:
        os.replace(path, state_dir / PREVIOUS)
    except FileNotFoundError:
        pass
    return path


class RedisLogRelay:
    """Follows the log file from its start; ``relay`` logs what was appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def _read(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:  # redis-server has not opened it yet
            return b""
        try:
            if os.fstat(fd).st_size < self._offset:  # replaced or truncated: start again
                self._offset, self._partial = 0, b""
            chunk = os.pread(fd, MAX_READ, self._offset)
        finally:
            os.close(fd)
        self._offset += len(chunk)
        return chunk

    def lines(self) -> list[str]:
        """The complete lines appended since the last call (a line longer than MAX_READ is cut)."""
        chunk = self._read()  # first: a file found replaced drops the old partial line
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        if len(self._partial) >= MAX_READ:  # no newline in sight: a line of its own, the rest follows
            complete.append(self._partial[:MAX_READ])
            self._partial = self._partial[MAX_READ:]
        return [line.decode("utf-8", "replace") for line in complete]

    def relay(self) -> None:
        for line in self.lines():
            found = relayed(line)
            if found is not None:
                log.log(*found)

    async def run(self) -> None:
        """Relay every READ_EVERY seconds until cancelled."""
        while True:
            self.relay()
            await asyncio.sleep(READ_EVERY)
