"""Pure parts of operations: sd_notify's status line and watchdog interval, the socket-activation env."""

from __future__ import annotations

import socket
from pathlib import Path

from cluster.arbiter import socket_activation
from cluster.supervisor.sd_notify import Notifier, status_line, watchdog_interval


def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({}, 42) is None


def test_status_line() -> None:
    assert status_line((8, 8), (10, 10), 97.2, 2) == "8/8 http, 10/10 queue, health 97, 2 alerts"
    assert status_line((3, 8), None, None, 1) == "3/8 http, 1 alert"
    assert status_line((1, 1), None, None, None) == "1/1 http"


def test_notifier_sends_status_only_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        notifier = Notifier(str(path))
        assert notifier.status("1/1 http") and not notifier.status("1/1 http")
        assert notifier.reloading()
        assert sock.recv(100) == b"STATUS=1/1 http"
        fields = dict(line.split("=", 1) for line in sock.recv(200).decode().splitlines())
        assert fields["RELOADING"] == "1" and int(fields["MONOTONIC_USEC"]) > 0
    assert not Notifier("").ready(), "outside systemd: a no-op"


def test_socket_activation_env_is_handed_to_the_arbiter_only() -> None:
    env = {"LISTEN_FDS": "2", "LISTEN_PID": "100", "LISTEN_FDNAMES": "http:http", "PATH": "/bin"}
    assert socket_activation.inherited(env, 100) == (3, 4)
    assert socket_activation.inherited(env, 101) == (), "meant for another process"
    arbiter = socket_activation.hand_on(env, (3, 4))
    assert "LISTEN_PID" not in arbiter and arbiter["LISTEN_FDS"] == "2" and arbiter["LISTEN_FDNAMES"] == "http:http"
    socket_activation.adopt(arbiter, 555)
    assert arbiter["LISTEN_PID"] == "555" and socket_activation.HANDED_ON not in arbiter
    assert socket_activation.without(env) == {"PATH": "/bin"}
    plain = socket_activation.hand_on({"PATH": "/bin"}, ())
    socket_activation.adopt(plain, 555)
    assert plain == {"PATH": "/bin"}


def test_bind_addresses_of_bound_sockets() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert socket_activation.bind_addresses((sock.fileno(),)) == [f"127.0.0.1:{sock.getsockname()[1]}"]


def test_log_format_auto_is_text_on_a_terminal_only(tmp_path: Path) -> None:
    import io
    import logging

    from cluster.observability.logs import ReopeningFileHandler, make_handler, resolve_format

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Tty()) == "json"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    text = make_handler("auto", stream=Tty())
    assert text.format(record).endswith("x: hello") if text.filter(record) else False
    file_handler = make_handler("auto", file=str(tmp_path / "a.log"))
    assert isinstance(file_handler, ReopeningFileHandler)
    file_handler.close()
