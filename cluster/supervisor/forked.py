"""The supervisor's half of the queue pools' fork server (``queues.fork_server``).

``ForkServerChild`` runs the fork server as a supervised child (restarted
like any other, as the supervisor's command loop decides) and talks to it over a fresh socket pair at
each start. ``ForkedChild`` is a pool: it asks the fork server for its
process and supervises it as a ``ForkedProcess``; the supervisor is its
parent (a child subreaper, ``cluster.supervisor.subreaper``), so it reaps it
and reads its exit status itself. While the fork server restarts, new pools
wait for it; if it is not ready within ``READY_WAIT``, a pool starts the
spawned way (``python -m queues.pool``) with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field

from cluster.supervisor.children import ChildProcess, ChildSpec, ExitReport, SupervisedChild
from cluster.queues.fork_protocol import MAX_LINE, ForkRequest, decode, encode

log = logging.getLogger("cluster.supervisor.forked")
READY_WAIT = 60.0
"""How long a pool waits for the fork server (its first start imports the jobs module) before it is spawned."""
ANSWER_WAIT = 30.0
UNKNOWN_EXIT = 255
"""asyncio's return code for a child whose status was lost; used alike."""


class ForkUnavailable(Exception):
    """The fork server is not there to fork (not ready in time, or it died while asked)."""


class ForkAbandoned(OSError):
    """The pool was stopped while it waited for the fork server: no process, and nothing to log."""


class ForkedProcess:
    """A pool process the fork server forked, adopted by the supervisor: what ``ChildProcess`` asks for.

    Its exit is seen through a pidfd in the event loop, then reaped with
    ``waitpid`` (asyncio's child watcher waits only on the pids it spawned).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            log.warning("forked pool %d was not our child to reap; its exit status is lost", self.pid)
            pid, code = self.pid, UNKNOWN_EXIT
        else:
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self.returncode = code
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class _Connection:
    """One start of the fork server: our end of its socket pair, and whether it said it is ready."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pid: int
    ready: bool = False
    broken: bool = False


@dataclass
class ForkServerChild(SupervisedChild):
    """The fork server as a supervised child: a new socket pair at each start; forks pools on request."""

    _connection: _Connection | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _asking: asyncio.Lock = field(default_factory=asyncio.Lock)
    _ready_task: asyncio.Task[None] | None = None
    env: dict[str, str] = field(default_factory=dict)

    async def _start_process(self) -> ChildProcess:
        await self._drop()
        ours, theirs = socket.socketpair()
        self.spec.pass_fds = (theirs.fileno(),)
        self.spec.argv = [*self.spec.argv[:-1], str(theirs.fileno())]
        try:
            process = await super()._start_process()
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_LINE)
        self._connection = _Connection(reader, writer, process.pid)
        self._ready_task = asyncio.create_task(self._await_ready(self._connection), name="fork-server-ready")
        return process

    async def _await_ready(self, connection: _Connection) -> None:
        try:
            ready = decode(await connection.reader.readline()).get("ready") is True
        except (ValueError, ConnectionError):  # ProtocolError, or a line over the reader's limit
            ready = False
        async with self._changed:
            connection.ready, connection.broken = ready, not ready
            self._changed.notify_all()
        if ready:
            took = time.time() - self.started_at if self.started_at else 0.0
            log.info("fork server %d ready: the queue runtime and the jobs preloaded in %.1f s", connection.pid, took,
                     extra={"child_pid": connection.pid})

    async def _drop(self) -> None:
        """Forget the previous start's connection (its process is gone)."""
        if self._connection is not None:
            self._connection.broken = True
            self._connection.writer.close()
            self._connection = None

    def _usable(self) -> _Connection | None:
        conn = self._connection
        usable = conn is not None and conn.ready and not conn.broken and conn.pid == self.pid  # still running
        return conn if usable else None

    async def fork(self, spec: ChildSpec, abandon: asyncio.Event) -> int:
        """A pool process for ``spec`` (its argv after ``-m queues.pool``); ForkUnavailable if none can be had.

        Waiting for a ready fork server ends when ``abandon`` is set (and ``wake`` called): the pool is stopping.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WAIT
        async with self._asking:
            while True:
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait_for(lambda: self._usable() or abandon.is_set()),
                                               deadline - loop.time())
                    except TimeoutError:
                        raise ForkUnavailable(f"no fork server ready within {READY_WAIT:.0f}s") from None
                    connection = self._usable()
                if abandon.is_set():
                    raise ForkAbandoned("stopping before it started")
                assert connection is not None
                try:
                    return await self._ask(connection, spec)
                except (ConnectionError, ValueError, TimeoutError) as exc:
                    # It died (or hangs): wait for its successor (the supervision loop starts one).
                    log.warning("fork server %d did not answer (%s)", connection.pid, exc)
                    connection.broken = True
                    if isinstance(exc, TimeoutError):
                        self.send_signal(signal.SIGKILL)

    async def _ask(self, connection: _Connection, spec: ChildSpec) -> int:
        env = spec.env or {}
        request = ForkRequest(argv=spec.argv[spec.argv.index("cluster.queues.pool") + 1:], name=spec.name,
                              env={k: v for k, v in env.items() if self.env.get(k) != v},
                              unset=[k for k in self.env if k not in env])
        connection.writer.write(encode(asdict(request)))
        await connection.writer.drain()
        line = await asyncio.wait_for(connection.reader.readline(), ANSWER_WAIT)
        if not line:
            raise ConnectionResetError("the fork server closed its end")
        answer = decode(line)
        if isinstance(answer.get("pid"), int):
            return int(answer["pid"])
        raise OSError(f"the fork server refused: {answer.get('error')}")

    async def wake(self) -> None:
        """Have every pool waiting for a ready fork server look again (one of them is stopping)."""
        async with self._changed:
            self._changed.notify_all()

    async def stop(self) -> int | None:
        code = await super().stop()
        await self._drop()
        return code


@dataclass
class ForkedChild(SupervisedChild):
    """A queue pool whose processes come from the fork server (spawned as before when it is not there)."""

    fork_server: ForkServerChild | None = None

    async def _start_process(self) -> ChildProcess:
        assert self.fork_server is not None
        try:
            return ForkedProcess(await self.fork_server.fork(self.spec, self._stop_requested))
        except ForkUnavailable as exc:
            log.warning("%s: %s; starting it as a fresh interpreter instead", self.spec.name, exc,
                        extra={"child": self.spec.name})
            return await super()._start_process()

    async def stop(self) -> int | None:
        self._stop_requested.set()
        if self.fork_server is not None:
            await self.fork_server.wake()
        return await super().stop()


def fork_server_spec(settings_path: str, env: dict[str, str], stop_timeout: float) -> ChildSpec:
    """The fork server's child spec; its last argument (the socket's fd) is set at each start."""
    return ChildSpec(name="fork-server", group="fork-server",
                     argv=[sys.executable, "-m", "cluster.queues.fork_server", settings_path, "-1"],
                     env=env, stop_timeout=stop_timeout)


def make_fork_server(spec: ChildSpec, report_exit: ExitReport) -> ForkServerChild:
    return ForkServerChild(spec, report_exit, env=dict(spec.env or {}))
