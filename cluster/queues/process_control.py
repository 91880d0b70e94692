"""Linux's prctl(2), for the few process attributes Python's os module does not set."""

from __future__ import annotations

import ctypes
import os

PR_SET_PDEATHSIG = 1
"""Get a signal when the parent exits (so nothing outlives the supervisor)."""
PR_SET_NAME = 15
"""The process's short name (``comm``: what ps -o comm and top show)."""
PR_SET_CHILD_SUBREAPER = 36
"""Orphaned descendants are re-parented to this process instead of init."""

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int | bytes) -> None:
    """Set one attribute of the calling process; OSError when the kernel refuses."""
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
