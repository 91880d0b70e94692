"""The state dir: private to the user running the cluster, and every file in it written safely.

The state dir holds the settings every child reads (passwords included), the
control socket and the embedded Redis's socket. Another user who can write to
it could plant a symlink where we write and make us (perhaps root) overwrite
any file, or swap the settings. So: the dir is created 0700 and refused when
another user owns it or group/others may write to it; a file is written into
a fresh name created with O_EXCL|O_NOFOLLOW inside the dir (never a
predictable temp name that a symlink could take) and renamed over its target.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# sun_path is 108 bytes on Linux, NUL included; the longest socket we create is redis.sock.
SOCKET_PATH_MAX = 107
LONGEST_SOCKET = "redis.sock"


class StateDirError(Exception):
    """The state dir cannot be trusted or used; the message is one line for the operator."""


def problems(path: Path, st: os.stat_result, uid: int) -> list[str]:
    """What makes a state dir unsafe, from its stat: not a dir, another owner, writable by others."""
    found = []
    if not stat.S_ISDIR(st.st_mode):
        found.append(f"state dir {path} is not a directory")
    if st.st_uid != uid:
        found.append(f"state dir {path} is owned by uid {st.st_uid}, not by this user (uid {uid})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        found.append(f"state dir {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                     f"run: chmod go-w {path}")
    if len(os.fsencode(path / LONGEST_SOCKET)) > SOCKET_PATH_MAX:
        found.append(f"state dir {path} is too long for a unix socket in it ({LONGEST_SOCKET}: at most "
                     f"{SOCKET_PATH_MAX} bytes); choose a shorter --state-dir")
    return found


def prepare(path: Path) -> Path:
    """Create the state dir 0700 if missing, then refuse it unless it is ours and private."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.lstat(path)
    except OSError as exc:
        raise StateDirError(f"state dir {path} cannot be created: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StateDirError(f"state dir {path} is a symlink; give its real path")
    found = problems(path, st, os.geteuid())
    if found:
        raise StateDirError("; ".join(found))
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours and not writable by others, but readable: the settings hold secrets
    return path
