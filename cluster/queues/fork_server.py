"""The queue pools' fork server (a zygote): ``python -m queues.fork_server SETTINGS_JSON FD``.

The supervisor starts it as one of its children, with one end of a socket
pair as ``FD``. It imports everything a pool process runs (``queues.pool``
and what that imports, uvloop, the configured jobs module), freezes those
objects out of the garbage collector's sight (``gc.freeze``: a collection
would otherwise write to every page that holds one and unshare it), says it
is ready, then forks a pool process for each request. The pools share the
preloaded pages copy-on-write instead of each importing its own copy.

Each pool is double-forked: the intermediate child exits at once, so the
pool process is re-parented to the supervisor (a child subreaper), which
watches, signals and reaps it as it does a child it spawned. The pool then
runs exactly what ``python -m queues.pool`` runs (``queues.pool.main``).

The protocol (``queues.fork_protocol``) is one JSON line each way. When the
supervisor closes its end, the server exits.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from cluster.config import Settings, mask_text
from cluster.observability.logs import configure as configure_logs
from cluster.observability.logs import redact_with
from cluster.observability.logs import reopen as reopen_logs
from cluster.queues import pool, registry
from cluster.queues.fork_protocol import MAX_LINE, ForkRequest, ProtocolError, decode, encode
from cluster.queues.process_control import PR_SET_NAME, PR_SET_PDEATHSIG, prctl

log = logging.getLogger("cluster.queues.fork_server")
EXIT_USAGE = 2
EXIT_ORPHANED = 4
"""A pool nobody would watch: its supervisor died before adopting it, or its fork server before answering."""
ADOPTION_POLL = 0.001
GO = b"1"
COMM_LENGTH = 15


def preload(settings: Settings) -> str | None:
    """Import what every pool imports on top of ``queues.pool``; returns the jobs module if it loaded.

    A jobs module that fails to import is left to the pools, which report it
    and exit as they do when started on their own.
    """
    try:
        import uvloop  # noqa: F401  (the pools' event loop)
    except ImportError:
        pass
    module = settings.queues.jobs_module
    try:
        registry.load_jobs_module(module)
    except Exception:
        log.exception("cannot preload the jobs module %r; the pools will report it", module)
        return None
    return module


def _read_line(reader: BinaryIO) -> bytes:
    """One line, or the first MAX_LINE + 1 bytes of a longer one (the rest is discarded)."""
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE and not line.endswith(b"\n"):
        while (rest := reader.readline(MAX_LINE)) and not rest.endswith(b"\n"):
            pass
    return line


def serve(sock: socket.socket, supervisor: int) -> int:
    """Answer fork requests until the supervisor closes its end."""
    reader = sock.makefile("rb")
    while line := _read_line(reader):
        go = -1
        try:
            request = ForkRequest.parse(decode(line))
            pid, go = fork_pool(request, supervisor, (reader, sock))
            answer: dict[str, Any] = {"pid": pid}
        except ProtocolError as exc:
            answer = {"error": f"bad request: {exc}"}
        except OSError as exc:
            answer = {"error": f"fork failed: {exc}"}
        if "error" in answer:
            log.error("fork request refused: %s", answer["error"])
        try:
            sock.sendall(encode(answer))
            if go >= 0:
                os.write(go, GO)
        finally:
            if go >= 0:
                os.close(go)
    return 0


def fork_pool(request: ForkRequest, supervisor: int, inherited: tuple[Any, ...]) -> tuple[int, int]:
    """Double-fork a pool process: its pid once the intermediate child is gone (it is then the supervisor's),
    and the pipe to write ``GO`` to once the supervisor has that pid (the pool waits for it)."""
    read_end, write_end = os.pipe()
    go_read, go_write = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        code = 1
        try:
            os.close(read_end)
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                os.close(go_write)
                _become_pool(request, _Lineage(parent, supervisor, go_read), inherited)
            os.write(write_end, str(pid).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    os.close(go_read)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(intermediate, 0)
    if not answer.isdigit():
        os.close(go_write)
        raise OSError("the intermediate child died before it forked")
    return int(answer), go_write


@dataclass(frozen=True)
class _Lineage:
    """What a pool process knows of its making: who forked it, who must adopt it, where its go-ahead comes."""

    intermediate: int
    supervisor: int
    go: int


def _become_pool(request: ForkRequest, lineage: _Lineage, inherited: tuple[Any, ...]) -> NoReturn:
    """In the grandchild: become a pool process exactly as ``python -m queues.pool`` does; never returns."""
    code: int = 1
    try:
        os.setsid()  # its own session, as a spawned pool: a terminal's Ctrl-C reaches only the supervisor
        _await_adoption(lineage.intermediate, lineage.supervisor)
        # Run only once the supervisor knows our pid: a fork server killed before it answered leaves
        # no pool the supervisor does not watch.
        with os.fdopen(lineage.go, "rb") as go:
            if go.read(len(GO)) != GO:
                os._exit(EXIT_ORPHANED)
        for thing in inherited:
            thing.close()
        for handler in logging.getLogger().handlers:
            handler.close()
        _reset_signals()
        os.environ.update(request.env)
        for key in request.unset:
            os.environ.pop(key, None)
        if request.name:
            prctl(PR_SET_NAME, request.name[:COMM_LENGTH].encode())
        sys.argv = [pool.__file__ or "cluster.queues.pool", *request.argv]
        code = pool.main(request.argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _await_adoption(intermediate: int, supervisor: int) -> None:
    """Wait for the intermediate child to exit (it does at once), then die with the supervisor.

    The death signal is set only once adopted: the kernel sends it when the
    parent exits, which the intermediate child's exit would be. If the
    supervisor died meanwhile, exit: nobody would watch this process.
    """
    while os.getppid() == intermediate:
        time.sleep(ADOPTION_POLL)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:
        os._exit(EXIT_ORPHANED)


def _reset_signals() -> None:
    """The signal state a fresh interpreter starts with (the pool installs its own handlers)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        configure_logs("queue-fork-server")
        log.error("usage: python -m queues.fork_server SETTINGS_JSON FD, got %r", args)
        return EXIT_USAGE
    settings = Settings.model_validate_json(Path(args[0]).read_text())
    configure_logs("queue-fork-server", settings.server.log_level, settings.logging.format, settings.logging.file)
    redact_with(mask_text)
    signal.signal(signal.SIGUSR1, lambda _sig, _frame: reopen_logs())  # the supervisor's logrotate signal
    sock = socket.socket(fileno=int(args[1]))
    supervisor = os.getppid()
    preloaded = preload(settings)
    # Whatever the imports left for the collector goes now, and the survivors are frozen: a pool's
    # collections then never touch (and unshare) the pages they live on.
    gc.collect()
    gc.freeze()
    sock.sendall(encode({"ready": True, "pid": os.getpid(), "preloaded": preloaded}))
    log.info("fork server ready", extra={"jobs_module": preloaded, "frozen_objects": gc.get_freeze_count()})
    return serve(sock, supervisor)


if __name__ == "__main__":
    sys.exit(main())
