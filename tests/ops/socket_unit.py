"""Plays a systemd .socket + .service pair for tests: keeps the inherited listening sockets and
(re)starts the service on them, with LISTEN_PID set to the service's own pid as systemd does.

    systemd-socket-activate -l ADDR -- python -m tests.ops.socket_unit PIDFILE -- COMMAND...

SIGUSR1 restarts the service (SIGTERM, wait, start again: `systemctl restart`);
SIGTERM stops it and exits. The service's pid is written to PIDFILE each time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

SD_LISTEN_FDS_START = 3
# sh replaces itself with the service (exec), so $$ is the service's pid.
SET_PID = 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"'


def main() -> None:
    pidfile, _, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    count = int(os.environ.pop("LISTEN_FDS"))
    if os.environ.pop("LISTEN_PID") != str(os.getpid()):
        raise SystemExit("the sockets were not meant for this process")
    fds = tuple(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    env = {**os.environ, "LISTEN_FDS": str(count)}
    restart, stop = threading.Event(), threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: restart.set())
    signal.signal(signal.SIGTERM, lambda *_: (stop.set(), restart.set()))
    while not stop.is_set():
        service = subprocess.Popen(["/bin/sh", "-c", SET_PID, "sh", *command], env=env, pass_fds=fds)
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(service.pid))
        os.replace(pidfile + ".tmp", pidfile)
        restart.wait()
        restart.clear()
        service.terminate()
        service.wait()


if __name__ == "__main__":
    main()
