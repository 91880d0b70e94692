"""`cluster systemd print|install`: the systemd units for this install (venv, config file, user).

The service is Type=notify: the supervisor sends READY=1 once every group
serves, STATUS= lines, RELOADING=1 on a reload and WATCHDOG=1 pings (see
cluster/supervisor/announce.py). With ``--socket`` a cluster.socket unit owns
the listening sockets, so a restart queues connections instead of refusing
them. docs/operations.md explains every line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from cluster.config import PRIORITIES, Settings

DEFAULT_CONFIG = "/etc/cluster/cluster.toml"
DEFAULT_DEST = "/etc/systemd/system"
STATE_DIR = "/var/lib/cluster"
RUNTIME_DIR = "/run/cluster"
# systemd restarts a supervisor whose loop has not pinged for this long.
WATCHDOG_SEC = 30
# What the supervisor's own stop adds to the children's timeouts (stop order, exits).
STOP_MARGIN = 15


@dataclass(frozen=True)
class Install:
    """Where this install lives, as the units need it."""

    name: str
    venv: str
    config: str
    user: str
    settings: Settings


def stop_timeout(settings: Settings) -> int:
    """Seconds systemd waits for a stop: the queue pools drain first (their longest job, the kill
    grace, their margin), then gunicorn's graceful timeout, then our own margin."""
    queues = settings.queues
    pools = max((queues.pool(p).timeout for p in PRIORITIES if queues.pool(p).workers), default=0.0)
    drain = pools + queues.kill_grace + 5 if pools else 0.0
    return int(drain + settings.server.graceful_timeout + 5 + STOP_MARGIN)


def _under_home(*paths: str) -> bool:
    return any(Path(p).resolve().is_relative_to(home) for p in paths for home in (Path("/home"), Path("/root")))


def render_service(install: Install, socket: bool) -> str:
    """cluster.service for this install."""
    # ProtectHome=yes hides /home: a venv or config kept there must stay readable.
    protect_home = "read-only" if _under_home(install.venv, install.config) else "yes"
    socket_lines = f"Requires={install.name}.socket\nAfter={install.name}.socket\n" if socket else ""
    return f"""\
# {install.name}.service: rendered by `cluster systemd print`; see docs/operations.md.
[Unit]
Description=cluster: supervised gunicorn + aiohttp workers and priority job queues
After=network-online.target redis-server.service postgresql.service
Wants=network-online.target
{socket_lines}
[Service]
Type=notify
NotifyAccess=main
User={install.user}
Group={install.user}
ExecStart={install.venv}/bin/cluster start --config {install.config}
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM to the supervisor only: it stops its children in order (queue pools
# drain, then gunicorn finishes in-flight requests); SIGKILL for all after the timeout.
KillMode=mixed
TimeoutStartSec=90
TimeoutStopSec={stop_timeout(install.settings)}
WatchdogSec={WATCHDOG_SEC}
Restart=on-failure
RestartSec=2
LimitNOFILE=65536
Environment=PYTHONUNBUFFERED=1
Environment=CLUSTER_SERVER_STATE_DIR={STATE_DIR}
Environment=CLUSTER_SERVER_WORKER_TMP_DIR={RUNTIME_DIR}
WorkingDirectory={STATE_DIR}
RuntimeDirectory={install.name}
RuntimeDirectoryMode=0700
StateDirectory={install.name}
StateDirectoryMode=0700
LogsDirectory={install.name}
LogsDirectoryMode=0750
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome={protect_home}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallFilter=@system-service
SystemCallArchitectures=native
CapabilityBoundingSet=

[Install]
WantedBy=multi-user.target
"""


def listen_line(bind: str) -> str:
    """A ListenStream= value for a gunicorn bind address."""
    return bind[len("unix:"):] if bind.startswith("unix:") else bind


def render_socket(install: Install) -> str:
    """cluster.socket: systemd holds the listening sockets across service restarts."""
    listens = "\n".join(f"ListenStream={listen_line(b)}" for b in install.settings.server.bind)
    return f"""\
# {install.name}.socket: rendered by `cluster systemd print --socket`; see docs/operations.md.
[Unit]
Description=cluster: listening sockets (kept open across restarts of {install.name}.service)

[Socket]
{listens}
FileDescriptorName=http
Service={install.name}.service
NoDelay=yes
Backlog=2048
SocketUser={install.user}
SocketMode=0660

[Install]
WantedBy=sockets.target
"""


def render(install: Install, socket: bool) -> dict[str, str]:
    """File name -> content of every unit."""
    units = {f"{install.name}.service": render_service(install, socket)}
    if socket:
        units[f"{install.name}.socket"] = render_socket(install)
    return units


def next_commands(install: Install, dest: str, socket: bool) -> list[str]:
    units = f"{install.name}.socket {install.name}.service" if socket else f"{install.name}.service"
    return [
        f"useradd --system --home-dir {STATE_DIR} --shell /usr/sbin/nologin {install.user}",
        f"install -d -m 0750 -o root -g {install.user} {Path(install.config).parent}",
        f"install -m 0640 -o root -g {install.user} deploy/cluster.toml {install.config}  # then edit it",
        f"{install.venv}/bin/cluster config check {install.config}",
        f"systemd-analyze verify {dest}/{install.name}.service",
        "systemctl daemon-reload",
        f"systemctl enable --now {units}",
        f"systemctl status {install.name}; journalctl -u {install.name} -f",
    ]


def _install(name: str, venv: str | None, config_file: str, user: str) -> Install:
    from cluster.cli.common import load_or_exit  # the CLI's config errors, exit 2

    settings = load_or_exit(config_file if Path(config_file).exists() else None).settings
    return Install(name=name, venv=str(Path(venv or sys.prefix).absolute()), config=config_file,
                   user=user, settings=settings)


def _options(func):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--socket", is_flag=True, help="Also a cluster.socket unit (socket activation)."),
        click.option("--name", default="cluster", show_default=True, help="Unit name."),
        click.option("--venv", help="The virtualenv holding `cluster` (default: this one)."),
        click.option("--config", "config_file", default=DEFAULT_CONFIG, show_default=True,
                     help="The TOML file the service reads (its bind goes into the socket unit)."),
        click.option("--user", default="cluster", show_default=True, help="The dedicated user it runs as."),
    ]):
        func = option(func)
    return func


@click.group("systemd")
def systemd_group() -> None:
    """systemd units for this install."""


@systemd_group.command("print")
@_options
def print_units(socket: bool, name: str, venv: str | None, config_file: str, user: str) -> None:
    """Print the units to stdout."""
    for filename, text in render(_install(name, venv, config_file, user), socket).items():
        click.echo(f"# --- {filename}\n{text}")


@systemd_group.command("install")
@_options
@click.option("--dest", default=DEFAULT_DEST, show_default=True, type=click.Path(file_okay=False))
def install_units(socket: bool, name: str, venv: str | None, config_file: str, user: str, dest: str) -> None:
    """Write the units into DEST and print the commands that finish the install."""
    install = _install(name, venv, config_file, user)
    Path(dest).mkdir(parents=True, exist_ok=True)
    for filename, text in render(install, socket).items():
        (Path(dest) / filename).write_text(text)
        click.echo(f"wrote {Path(dest) / filename}")
    click.echo("next, as root:")
    for command in next_commands(install, dest, socket):
        click.echo(f"  {command}")
