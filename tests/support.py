"""Test helpers: free ports, waiting on conditions, a real `cluster start` in a temp state dir, a `cluster start`
that must fail, background HTTP load, and running async test bodies."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def run_async(body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body()`` in a fresh event loop: a synchronous test driving async code."""
    return asyncio.run(body())  # type: ignore[arg-type]


def in_loop(test: Callable[..., Awaitable[Any]]) -> Callable[..., None]:
    """Decorate an async test to run in its own event loop (its fixtures still come from its signature)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        run_async(lambda: test(*args, **kwargs))

    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], T], timeout: float = 60.0, interval: float = 0.1, what: str = "condition") -> T:
    """Poll until ``condition()`` is truthy; a generous deadline, never a speed assertion."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the condition may fail until the thing is up
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


def http_get(url: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers, body); HTTP errors are results."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a `cluster` subprocess: this checkout first on the path, no stray config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        env=cli_env(env), cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout,
    )


def bad_start(state_dir: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`cluster start *args` that is expected to exit on its own: one worker, its own ports, no Redis tier.

    ``timeout`` only bounds a hang; a ``--bind`` in ``args`` replaces the free port.
    """
    argv = ["start", *args, "--state-dir", str(state_dir), "--workers", "1"]
    if "--bind" not in args:
        argv += ["--bind", f"127.0.0.1:{free_port()}"]
    base = {"CLUSTER_METRICS_BIND": f"127.0.0.1:{free_port()}", "CLUSTER_REDIS_EMBEDDED": "false"}
    return subprocess.run([sys.executable, "-m", "cluster.cli", *argv], env=cli_env({**base, **(env or {})}),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


class RequestLoop:
    """Background load: ``threads`` threads a path GET ``base + path`` on fresh connections until stopped
    (or until ``limit`` requests in all), counting the 200s and keeping every failure and every ``pid``
    a JSON answer names. Use as a context manager, or ``start()`` then ``stop()``."""

    def __init__(self, base: str, paths: list[str] | None = None, threads: int = 1,
                 limit: int | None = None, timeout: float = 30.0) -> None:
        self.base, self.limit, self.timeout = base, limit, timeout
        self.ok = 0
        self.failures: list[str] = []
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(path,), daemon=True)
                         for path in (paths or [""]) for _ in range(threads)]

    def _done(self) -> bool:
        return self._stop.is_set() or (self.limit is not None and self.ok + len(self.failures) >= self.limit)

    def _run(self, path: str) -> None:
        while not self._done():
            try:
                status, _, body = http_get(self.base + path, timeout=self.timeout)
            except Exception as exc:  # a refused or reset connection is what the load looks for
                with self._lock:
                    self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            with self._lock:
                if status != 200:
                    self.failures.append(f"{path}: HTTP {status} {body[:200]!r}")
                    continue
                self.ok += 1
                try:
                    answer = json.loads(body)
                except ValueError:
                    continue
                if isinstance(answer, dict) and answer.get("pid"):
                    self.pids.add(answer["pid"])

    def start(self) -> "RequestLoop":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 60)

    def __enter__(self) -> "RequestLoop":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClusterProcess:
    """A real supervisor started with `cluster start`, stopped (and its whole tree killed) on close."""

    def __init__(self, state_dir: Path, args: list[str] | None = None, env: dict[str, str] | None = None,
                 workers: int = 2, queues: bool = False) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self.args = ["start", "--bind", f"127.0.0.1:{self.port}", "--state-dir", str(state_dir)]
        if not args or not any(a.startswith("--workers") or a.startswith("--min-workers") for a in args):
            self.args += ["--workers", str(workers)]
        self.args += args or []
        # Every cluster gets its own metrics listener: many run side by side in tests.
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        # The queue tier (a redis-server and ten pool processes) only where a
        # test asks for it: on two cores it would slow every other test down.
        tier = {} if queues else {"CLUSTER_REDIS_EMBEDDED": "false"}
        self.env = {"CLUSTER_METRICS_BIND": f"127.0.0.1:{self.metrics_port}", **tier, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._tree: set[int] = set()

    def start(self, wait_ready: bool = True, new_session: bool = False) -> "ClusterProcess":
        """``new_session``: the supervisor leads its own process group, as `cluster start` in a terminal."""
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", *self.args],
            env=cli_env(self.env), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
        if wait_ready:
            wait_for(lambda: self.status().get("supervisor", {}).get("ready"), 90, 0.2, "the cluster to be ready")
        return self

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--state-dir", str(self.state_dir), env=self.env)

    def status(self) -> dict[str, Any]:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"supervisor exited with {self.proc.returncode}; log: {self.log_path}")
        result = self.cli("status", "--json")
        if result.returncode != 0:
            return {}
        status = json.loads(result.stdout)
        self._remember(status)
        return status

    def _remember(self, status: dict[str, Any]) -> None:
        self._tree.add(status["supervisor"]["pid"])
        for row in status.get("processes", []):
            if row.get("pid"):
                self._tree.add(row["pid"])

    def worker_pids(self) -> list[int]:
        return [row["pid"] for row in self.status()["processes"] if row["group"] == "http-worker"]

    def tree_pids(self) -> set[int]:
        """Every pid of the tree seen so far plus the live descendants of the supervisor."""
        pids = set(self._tree)
        if self.proc is not None:
            pids.add(self.proc.pid)
            try:
                pids.update(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return pids

    def close(self) -> None:
        if self.proc is None:
            return
        pids = self.tree_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in pids:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        self._log.close()
