"""Checks made before the supervisor forks anything: a start that cannot succeed fails at once, in one line.

Each check returns problems, one line each. The user's code (APP, the jobs
module) is imported and the APP built in a throwaway child process
(``cluster.supervisor.preflight_app``), so the supervisor never imports it.
The checks that change nothing (``config_problems``: the settings survive
their JSON form, binds resolve, the state dir is usable) are one list that
``cluster config check`` and ``cluster start`` both run, so the two never
disagree; ``start`` and ``config check --app`` then also bind each address
for a moment and build the APP.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from cluster.config import Settings
from cluster.config import state_files
from cluster.config.values import split_host_port
from cluster.supervisor.state_dir import StateDirError, located, problems as state_dir_stat_problems
from cluster.arbiter import socket_activation
from cluster.supervisor import takeover
from cluster.supervisor.leftovers import previous_tree
from cluster.supervisor.port_holder import listeners, port_holder

# sockaddr_un.sun_path is 108 bytes on Linux, the final NUL included.
MAX_UNIX_PATH = 107
CONTROL_SOCKET = state_files.CONTROL_SOCKET.name
APP_CHECK_ROLE = "preflight"

log = logging.getLogger("cluster.supervisor.preflight")


@dataclass
class Report:
    """What preflight found: config problems (exit 2) and runtime problems (exit 1)."""

    config: list[str] = field(default_factory=list)
    runtime: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.config + self.runtime

    @property
    def exit_code(self) -> int:
        return 2 if self.config else 1 if self.runtime else 0


def round_trip_problems(settings: Settings) -> list[str]:
    """The settings as every child reads them (JSON) must validate to the same values."""
    try:
        again = Settings.model_validate_json(settings.model_dump_json())
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (in the settings children read)"
                for err in exc.errors()]
    if again != settings:
        return ["settings do not survive their JSON form: a value changes on the way to the children"]
    return []


def resolve(key: str, address: str) -> tuple[list[tuple], str | None]:
    """(getaddrinfo's answers, None) for a ``HOST:PORT`` bind, or ([], the problem)."""
    try:
        host, port = split_host_port(address)
    except ValueError:
        return [], f"{key} {address!r} is not HOST:PORT"
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE), None
    except (socket.gaierror, UnicodeError) as exc:
        return [], f"{key} {address!r}: cannot resolve {host!r} ({getattr(exc, 'strerror', None) or exc})"


def _bind_error(infos: list[tuple]) -> OSError | None:
    """Bind the first resolved address (then close it at once): the error, or None when it binds."""
    family, kind, proto, _, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            # As gunicorn binds: a port in TIME_WAIT is free to take.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
    except OSError as exc:
        return exc
    return None


def tcp_bind_problem(key: str, address: str, previous: frozenset[int] = frozenset()) -> str | None:
    """Whether ``address`` resolves and can be bound now; a port only the ``previous`` tree of this state dir
    holds is no problem: the start waits for its release (``leftovers.ports_released``)."""
    infos, problem = resolve(key, address)
    if problem:
        return problem
    exc = _bind_error(infos)
    if exc is None:
        return None
    port = infos[0][4][1]
    if exc.errno == errno.EADDRINUSE:
        if takeover.releasing(listeners(port), previous):
            return None
        holder = port_holder(port)
        held = f"; {holder} listens on port {port}" if holder else ""
    else:
        held = ""
    return f"{key} {address!r}: cannot bind ({exc.strerror or exc}{held})"


def in_use(binds: list[tuple[str, str]]) -> dict[str, takeover.Holders]:
    """The TCP binds whose port is in use now, each with the pids listening on it."""
    held = {}
    for key, address in binds:
        infos, problem = resolve(key, address)
        exc = None if problem else _bind_error(infos)
        if exc is not None and exc.errno == errno.EADDRINUSE:
            held[address] = listeners(infos[0][4][1])
    return held


def unix_bind_problem(key: str, path: str) -> str | None:
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        return f"{key} 'unix:{path}': the path is longer than {MAX_UNIX_PATH} bytes (AF_UNIX limit)"
    parent = Path(path).parent
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{key} 'unix:{path}': cannot create a socket in {parent}"
    return None


def _binds(settings: Settings) -> list[tuple[str, str]]:
    """(key, address) of every address the cluster listens on."""
    binds = [("server.bind", address) for address in settings.server.bind]
    return binds + ([("metrics.bind", settings.metrics.bind)] if settings.metrics.bind else [])


def tcp_binds(settings: Settings, socket_activated: bool) -> list[tuple[str, str]]:
    """(key, address) of every TCP address the cluster binds itself: with socket activation, systemd
    bound server.bind (it holds the port, and hands it on)."""
    return [(key, address) for key, address in _binds(settings)
            if not address.startswith("unix:") and not (socket_activated and key == "server.bind")]


def resolve_problems(settings: Settings) -> list[str]:
    """Every TCP bind parses and resolves (nothing is bound); a unix one fits AF_UNIX in a usable dir."""
    found = []
    for key, address in _binds(settings):
        if address.startswith("unix:"):
            found.append(unix_bind_problem(key, address[len("unix:"):]))
        else:
            found.append(resolve(key, address)[1])
    return [problem for problem in found if problem]


def bind_problems(settings: Settings) -> list[str]:
    """Every TCP bind can be bound now, or is being released by the previous tree of this state dir."""
    binds = tcp_binds(settings, bool(socket_activation.inherited(os.environ, os.getpid())))
    previous = previous_tree(located(settings.server.state_dir)) if binds else frozenset()
    found = [tcp_bind_problem(key, address, previous) for key, address in binds]
    return [problem for problem in found if problem]


def socket_path_problems(state_dir: Path) -> list[str]:
    """The control socket path fits AF_UNIX (a setting that can never work: a config error)."""
    control = state_dir / CONTROL_SOCKET
    if len(os.fsencode(str(control))) > MAX_UNIX_PATH:
        return [f"server.state_dir {str(state_dir)!r}: its control socket path is {len(str(control))} bytes, "
                f"longer than the {MAX_UNIX_PATH} a unix socket allows; use a shorter path"]
    return []


def state_dir_config_problems(given: str) -> list[str]:
    """The state dir as `start` will refuse it, changing nothing: a link, under /proc, not ours, too long,
    or missing where it cannot be created."""
    try:
        state_dir = located(given)
    except StateDirError as exc:
        return [f"server.state_dir: {exc}"]
    try:
        found = state_dir_stat_problems(state_dir, os.lstat(state_dir), os.geteuid())
    except FileNotFoundError:
        parent = next(p for p in state_dir.parents if p.exists())
        found = [] if os.access(parent, os.W_OK | os.X_OK) else [
            f"state dir {state_dir} is not usable: it cannot be created in {parent} (not writable)"]
    return [f"server.state_dir: {problem}" for problem in found] or socket_path_problems(state_dir)


def config_problems(settings: Settings) -> list[str]:
    """The checks that need no side effect: `config check` and `start` run this same list (exit 2)."""
    found = round_trip_problems(settings)
    if found:
        return found
    return state_dir_config_problems(settings.server.state_dir) + resolve_problems(settings)


def state_dir_problems(state_dir: Path) -> list[str]:
    """The state dir can be created and written."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".preflight-"):
            pass
    except OSError as exc:
        return [f"server.state_dir {str(state_dir)!r} is not usable: {exc.strerror or exc}"]
    return []


def app_check(settings: Settings, timeout: float) -> tuple[list[str], list[str]]:
    """Import the jobs module and build the APP in a throwaway child: (problems, warnings), one line each."""
    if not settings.server.app and not settings.queues.jobs_module:
        return [], []
    env = {**os.environ, "CLUSTER_PROCESS_ROLE": APP_CHECK_ROLE}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cluster.supervisor.preflight_app"],
            input=settings.model_dump_json(), env=env, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return [f"server.app {settings.server.app!r}: building the app took more than {timeout:.0f}s "
                "(server.boot_grace)"], []
    lines = done.stdout.strip().splitlines()
    try:
        verdict = json.loads(lines[-1])
        problems, warnings = list(verdict["problems"]), list(verdict["warnings"])
    except (IndexError, ValueError, KeyError, TypeError):
        tail = done.stderr.strip().splitlines()
        return [f"the app check exited with {done.returncode}: {tail[-1] if tail else 'no output'}"], []
    if done.returncode != 0 and not problems:
        problems = [f"the app check exited with {done.returncode}"]
    return problems, warnings


def run(settings: Settings) -> Report:
    """Every check; nothing is left running and nothing but the state dir is created."""
    report = Report(config=config_problems(settings))
    if report.config:
        return report
    report.runtime += bind_problems(settings)
    report.runtime += state_dir_problems(located(settings.server.state_dir))
    checked = [f"building {settings.server.app}"] if settings.server.app else []
    checked += [f"importing {settings.queues.jobs_module}"] if settings.queues.jobs_module else []
    # Seconds of silence otherwise. The line before is for a terminal only: elsewhere a start that
    # fails says so in one line, the problem's.
    if checked and sys.stderr.isatty():
        log.info("checking the app in a throwaway process: %s", ", ".join(checked))
    began = time.monotonic()
    problems, report.warnings = app_check(settings, max(settings.server.boot_grace, 10.0))
    if checked and not problems:
        log.info("app check passed in %.1f s: %s", time.monotonic() - began, ", ".join(checked))
    report.runtime += problems
    return report
