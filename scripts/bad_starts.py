"""Every start that cannot succeed, timed: ``.venv/bin/python scripts/bad_starts.py``.

Prints a Markdown row a case: exit code, seconds until `cluster start` exited,
and the last line it printed on stderr (the table in docs/lifecycle.md).
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import bad_start  # noqa: E402


def run(name: str, args: list[str], env: dict[str, str] | None = None, state: Path | None = None) -> None:
    started = time.monotonic()
    done = bad_start(state or WORK / name.replace(" ", "_") / "state", *args, env=env)
    seconds = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    sys.stdout.write(f"| {name} | {done.returncode} | {seconds:.1f} | `{lines[-1] if lines else ''}` |\n")


WORK = Path(tempfile.mkdtemp(prefix="bad-starts-"))


def main() -> None:
    blocker = WORK / "a-file"
    blocker.write_text("not a directory")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run("missing APP module", ["no_such_module:app"])
        run("raising APP", ["tests.apps.lifecycle:raising()"])
        run("APP not an Application", ["tests.apps.lifecycle:not_an_app"])
        run("APP failing only in the workers (first boot)", ["tests.apps.lifecycle:fails_in_workers()"])
        run("port in use", ["--bind", f"127.0.0.1:{port}"])
        run("unresolvable bind host", ["--bind", "no-such-host.invalid:8000"])
        run("invalid bind host", ["--bind", "256.1.1.1:8000"])
        run("REDIS_URL port 99999", [], {"REDIS_URL": "redis://127.0.0.1:99999/0"})
        run("inf in a float setting", [], {"CLUSTER_HEALTH_INTERVAL": "inf"})
        run("nan in a float setting", [], {"CLUSTER_AUTOSCALE_COOLDOWN": "nan"})
        run("metrics.bind=garbage", [], {"CLUSTER_METRICS_BIND": "garbage"})
        run("metrics.bind port in use", [], {"CLUSTER_METRICS_BIND": f"127.0.0.1:{port}"})
        run("unusable state dir", [], state=blocker / "state")
        run("state dir path too long", [], state=WORK / ("d" * 50) / ("e" * 50))


if __name__ == "__main__":
    main()
