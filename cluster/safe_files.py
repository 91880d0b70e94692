"""Files written (and read) so that nothing planted in their directory is ever followed or opened."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_file(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace ``path`` atomically: write a fresh O_EXCL|O_NOFOLLOW file next to it, then rename it over.

    The temp name is random and created in the target's own dir, so nothing
    planted in advance (a symlink, a hard link, a file of another user) is
    ever opened; the rename replaces a symlink at ``path`` itself, never its target.
    """
    body = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_file(path: Path, limit: int = 65536) -> bytes | None:
    """The first ``limit`` bytes of ``path``, read without following a link: None when it is missing or a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # missing, or a symlink (ELOOP)
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit)
