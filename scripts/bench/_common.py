"""Shared by the bench scripts: arguments, tables, JSON output, wrk, CPU pinning, servers to measure.

Not a bench script itself (the leading underscore keeps run_all from running it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "_wrk_report.lua"


def _project_python() -> None:
    """Run under the project's interpreter: `#!/usr/bin/env python3` may be one without its packages."""
    try:
        import aiohttp  # noqa: F401
        import gunicorn  # noqa: F401
    except ImportError:
        venv = ROOT / ".venv" / "bin" / "python"
        if venv.exists() and Path(sys.executable) != venv:
            os.execv(venv, [str(venv), *sys.argv])
        sys.exit(f"{sys.executable} lacks the project's packages: run `make install`, then "
                 f"`.venv/bin/python {sys.argv[0]}` (or make bench)")


_project_python()
PY = sys.executable


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="one short run per case (a smoke check)")
    parser.add_argument("--json-out", type=Path, help="also write the table as JSON to this path")
    parser.add_argument("--runs", type=int, help="runs per case (default 3, --quick 1)")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    return args


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def emit(title: str, columns: list[str], rows: list[list[Any]], notes: list[str], json_out: Path | None) -> None:
    """Print the table (always) and write the contract's JSON when asked."""
    cells = [columns] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(f"  * {note}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"title": title, "columns": columns, "rows": rows, "notes": notes}, indent=2))


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise the soft open-files limit (inherited by the servers and wrk we start) toward ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ensure_wrk() -> str:
    """wrk's path; installed from apt when missing and we are root."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        sys.exit("wrk is missing and we are not root: install it (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    path = shutil.which("wrk")
    if not path:
        sys.exit("apt-get installed no wrk")
    return path


def core_split() -> tuple[list[int], list[int]]:
    """(server cores, load-generator cores): the first half and the rest; one core serves both."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) == 1:
        return cores, cores
    half = len(cores) // 2
    return cores[:half], cores[half:]


def pinned(cores: list[int], argv: list[str]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cores)), *argv]


def run_wrk(url: str, conns: int, seconds: float, cores: list[int], timeout_s: int = 10) -> dict[str, Any]:
    """One wrk run pinned to ``cores``: req/s, latency in ms, errors by kind."""
    argv = pinned(cores, [ensure_wrk(), f"-t{min(len(cores), conns)}", f"-c{conns}", f"-d{seconds}s",
                          f"--timeout={timeout_s}s", "--latency", "-s", str(WRK_SCRIPT), url])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "requests": raw["requests"], "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "mean_ms": raw["mean_us"] / 1000, "p50_ms": raw["p50_us"] / 1000, "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000, "errors": errors,
        "error_kinds": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout")},
    }


def wait_http(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process (and its children) pinned to ``cores``; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], port: int, cores: list[int], env: dict[str, str] | None = None,
                 cwd: Path = ROOT) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.command = " ".join(argv)
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name.split()[0]}-", suffix=".log", delete=False)
        self.keep_log = False
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_")}
        full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH_DIR)])
        full_env.update(env or {})
        self.proc = subprocess.Popen(pinned(cores, argv), env=full_env, cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self) -> bool:
        """Beyond answering /ping: subclasses wait until every worker has booted."""
        return True

    def wait_ready(self, warm_up_s: float = 2.0) -> "Server":
        try:
            wait_http(f"{self.url}/ping")
            deadline = time.monotonic() + 90
            while not self.ready():
                if time.monotonic() > deadline:
                    raise RuntimeError("not ready within 90s")
                time.sleep(0.2)
        except RuntimeError as exc:
            self.keep_log = True
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}; log: {self.log.name}") from None
        time.sleep(warm_up_s)  # let the last-forked workers settle before anything is measured
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its session still around
        except ProcessLookupError:
            pass
        self.log.close()
        if not self.keep_log:
            os.unlink(self.log.name)


class ClusterServer(Server):
    """`cluster start`; ready once its supervisor says so (every worker booted)."""

    def __init__(self, name: str, argv: list[str], port: int, cores: list[int], env: dict[str, str],
                 state_dir: Path) -> None:
        super().__init__(name, argv, port, cores, env)
        self.state_dir = state_dir

    def ready(self) -> bool:
        result = subprocess.run([PY, "-m", "cluster.cli", "status", "--json", "--state-dir", str(self.state_dir)],
                                capture_output=True, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        return result.returncode == 0 and json.loads(result.stdout).get("supervisor", {}).get("ready", False)


def cluster_server(workers: int, cores: list[int], state_dir: Path, access_log: bool = False,
                   event_loop: str = "auto") -> Server:
    """`cluster start` with the built-in app and a fixed worker count (the queue tier on, as by default)."""
    port = free_port()
    argv = [PY, "-m", "cluster.cli", "start", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--state-dir", str(state_dir)]
    env = {"CLUSTER_SERVER_ACCESS_LOG": "true" if access_log else "false", "CLUSTER_SERVER_EVENT_LOOP": event_loop}
    label = "cluster start" + (" (access log on)" if access_log else "") + (
        f" (event_loop={event_loop})" if event_loop != "auto" else "")
    return ClusterServer(label, argv, port, cores, env, state_dir)


def gunicorn_server(workers: int, cores: list[int], worker_class: str = "aiohttp.GunicornWebWorker",
                    access_log: bool = False) -> Server:
    """Plain gunicorn serving the same app (``_plain_app:runner``)."""
    port = free_port()
    argv = [PY, "-m", "gunicorn", "-k", worker_class, "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "--log-level", "warning", "_plain_app:runner"]
    env = {"CLUSTER_SERVER_ACCESS_LOG": "true" if access_log else "false"}
    return Server(f"gunicorn -k {worker_class.split('.')[-1]}", argv, port, cores, env, cwd=BENCH_DIR)


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server as the embedded one runs (append-only everysec, noeviction): (process, URL)."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed")
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")
