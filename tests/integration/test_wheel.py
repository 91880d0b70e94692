"""The built wheel, as a user installs it: one top-level import name, and `cluster start` serving an app
whose directory has its own config.py, db.py, queues.py and workers.py, from outside this checkout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT, free_port, http_get, wait_for

pytestmark = pytest.mark.integration

# The user's own modules, named as ours once were: the runtime must import none of them,
# and the app must get these, not ours.
USER_MODULES = {
    "config.py": 'GREETING = "hello from the user\'s config.py"\n',
    "db.py": 'NAME = "the user\'s db.py"\n',
    "queues.py": 'NAME = "the user\'s queues.py"\n',
    "workers.py": 'NAME = "the user\'s workers.py"\n',
    "myapp.py": '''\
from aiohttp import web

import config
import db
from cluster import enqueue


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"greeting": config.GREETING, "db": db.NAME})


async def record(request: web.Request) -> web.Response:
    done = await enqueue("myjobs.record", request.query["path"], priority="high")
    return web.json_response({"job_id": done.id})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_post("/record", record)
    return app
''',
    "myjobs.py": '''\
import queues
import workers
from cluster import current_job, job


@job(priority="high", timeout=5)
def record(path: str) -> str:
    with open(path, "w") as out:
        out.write(f"{queues.NAME} / {workers.NAME} / attempt {current_job().attempt}")
    return path
''',
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("cluster-*.whl")
    return built


def test_the_wheel_has_one_top_level_name_and_its_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        declared = whl.read(top_level).decode().split()
    roots = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert roots == {"cluster"} and declared == ["cluster"]
    assert {"cluster/dashboard/static/dashboard.css", "cluster/dashboard/static/dashboard.js"} <= set(names)
    assert not any(n.startswith("tests/") for n in names)


def _venv_with(wheel: Path, where: Path) -> Path:
    """A fresh venv holding the wheel (not editable). Its dependencies are this interpreter's, reached
    through a .pth line: a path in a .pth does not run that directory's own .pth files, so the
    checkout's editable install stays invisible there."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "outer-site-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return where


def test_the_installed_wheel_serves_an_app_with_its_own_config_module(wheel: Path, tmp_path: Path) -> None:
    venv = _venv_with(wheel, tmp_path / "venv")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for name, text in USER_MODULES.items():
        (app_dir / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_") and k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cli = venv / "bin" / "cluster"

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import cluster; print(cluster.__file__)"],
                           cwd=app_dir, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), f"cluster came from {where}, not the installed wheel"
    version = subprocess.run([str(cli), "--version"], env=env, capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"cluster, version {wheel.name.split('-')[1]}"

    port, metrics = free_port(), free_port()
    state = tmp_path / "state"
    log = (tmp_path / "cluster.log").open("wb")
    proc = subprocess.Popen(
        [str(cli), "start", "myapp:make_app()", "--jobs", "myjobs", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--state-dir", str(state)],
        cwd=app_dir, env={**env, "CLUSTER_METRICS_BIND": f"127.0.0.1:{metrics}", "QUEUE_MEDIUM_WORKERS": "1",
                          "QUEUE_LOW_WORKERS": "1", "QUEUE_HIGH_WORKERS": "1"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def status() -> dict:
            assert proc.poll() is None, (tmp_path / "cluster.log").read_text()[-3000:]
            done = subprocess.run([str(cli), "status", "--json", "--state-dir", str(state)], env=env,
                                  capture_output=True, text=True, timeout=30)
            return json.loads(done.stdout) if done.returncode == 0 else {}

        wait_for(lambda: status().get("supervisor", {}).get("ready"), 120, 0.3, "the cluster to be ready")
        code, _, body = http_get(f"http://127.0.0.1:{port}/hello")
        assert code == 200 and json.loads(body) == {"greeting": "hello from the user's config.py",
                                                     "db": "the user's db.py"}

        out = tmp_path / "recorded.txt"
        post = urllib.request.Request(f"http://127.0.0.1:{port}/record?path={out}", method="POST")
        with urllib.request.urlopen(post, timeout=30) as answer:
            assert "job_id" in json.loads(answer.read())
        wait_for(out.exists, 60, 0.2, "the job to run")
        assert out.read_text() == "the user's queues.py / the user's workers.py / attempt 1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "cluster.log").read_text()[-3000:]
