"""The state dir: private to the user running the cluster, and every file in it written safely.

The state dir holds the settings every child reads (passwords included), the
control socket and the embedded Redis's socket. Another user who can write to
it could plant a symlink where we write and make us (perhaps root) overwrite
any file, or swap the settings. So: the dir is created 0700 and refused when
another user owns it or group/others may write to it; a file is written into
a fresh name created with O_EXCL|O_NOFOLLOW inside the dir (never a
predictable temp name that a symlink could take) and renamed over its target.

The given path is looked at with lstat before anything resolves it: a link
there is refused, its target left as it is (not chmodded, nothing deleted or
written in it). Every dir and file inside is opened with O_NOFOLLOW.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# sun_path is 108 bytes on Linux, NUL included; the longest socket we create is redis.sock.
SOCKET_PATH_MAX = 107
LONGEST_SOCKET = "redis.sock"
# Kernel file systems: a state dir there is never what the operator meant (and writes there change the kernel).
VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"))
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StateDirError(Exception):
    """The state dir cannot be trusted or used; the message is one line for the operator."""


def location_problems(path: Path) -> list[str]:
    """Pure: what is wrong with where the state dir is (an absolute path, not resolved)."""
    for root in VIRTUAL_ROOTS:
        if path == root or root in path.parents:
            return [f"state dir {path} is under {root}, a kernel file system; choose a real directory"]
    return []


def located(given: str | Path) -> Path:
    """The state dir's absolute path, refused when it is a symlink: looked at before anything resolves it."""
    path = Path(os.path.abspath(given))
    found = location_problems(path)
    if found:
        raise StateDirError(found[0])
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path.resolve()  # a missing leaf: prepare() creates it
    except OSError as exc:
        raise StateDirError(f"state dir {path} is not usable: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StateDirError(f"state dir {path} is a symlink; give its real path (its target is left untouched)")
    return path.resolve()


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


def _open_dir(path: Path, what: str) -> int:
    """A descriptor of the dir at ``path`` itself, never of a symlink's target."""
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise StateDirError(f"{what} {path} is a symlink; give its real path (its target is left untouched)") \
                from None
        raise StateDirError(f"{what} {path} cannot be opened: {exc.strerror}") from None


def prepare(path: Path) -> Path:
    """Create the state dir 0700 if missing, then refuse it unless it is ours, private and not a link."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateDirError(f"state dir {path} cannot be created: {exc.strerror}") from None
    fd = _open_dir(path, "state dir")
    try:
        st = os.fstat(fd)
        found = problems(path, st, os.geteuid())
        if found:
            raise StateDirError("; ".join(found))
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o700)  # ours and not writable by others, but readable: the settings hold secrets
    finally:
        os.close(fd)
    return path


def private_subdir(state_dir: Path, name: str) -> Path:
    """``<state_dir>/name``, created 0700 if missing; refused when it is a link or not ours."""
    path = state_dir / name
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # mkdir never follows a link at the last component: _open_dir refuses one
    except OSError as exc:
        raise StateDirError(f"{path} cannot be created: {exc.strerror}") from None
    fd = _open_dir(path, "state dir entry")
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise StateDirError(f"state dir entry {path} is owned by uid {st.st_uid}, not by this user")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path
